/* Image grids over the backend interface (see train_images.h). */
#include "train_images.h"

#include <stdlib.h>
#include <string.h>

#include "philox.h"

/* Decodes n latents in batches of at most `batch`. */
int cuvae_decode_all(cuvae_backend *be, const cuvae_model *m, const float *z, int n, int batch,
                     float *x, cuvae_status *st)
{
    if (batch <= 0) batch = n;
    for (int first = 0; first < n; first += batch) {
        int b = n - first < batch ? n - first : batch;
        if (cuvae_backend_decode(be, z + (size_t)first * (size_t)m->latent, b,
                                 x + (size_t)first * (size_t)m->x_dim, st))
            return -1;
    }
    return 0;
}

void cuvae_to_display(const cuvae_model *m, float *v, size_t n)
{
    float lo = m->x_lo, hi = m->x_hi;
    if (lo == 0.0f && hi == 1.0f) return;
    float span = hi > lo ? hi - lo : 1.0f;
    for (size_t i = 0; i < n; i++) v[i] = (v[i] - lo) / span;
}

int cuvae_write_recon_grid(cuvae_backend *be, const cuvae_model *m, const cuvae_dataset *data,
                           const uint8_t *originals, cuvae_set set, int n, int per_row, int batch,
                           const cuvae_grid_style *style, const char *path, cuvae_status *st)
{
    if (n > data->n) n = (int)data->n;
    if (n <= 0) return cuvae_fail(st, "%s: no examples to reconstruct", path);
    if (per_row <= 0 || per_row > n) per_row = n;
    if (batch <= 0 || batch > n) batch = n;
    size_t d = (size_t)m->x_dim, L = (size_t)m->latent;
    int rc = -1;
    int32_t *idx = cuvae_malloc((size_t)batch * sizeof *idx, "reconstruction indices", st);
    float *mu = cuvae_malloc((size_t)n * L * sizeof *mu, "reconstruction latents", st);
    float *recon = cuvae_malloc((size_t)n * d * sizeof *recon, "reconstructions", st);
    int rows_of_pairs = (n + per_row - 1) / per_row;
    size_t cells = (size_t)rows_of_pairs * 2 * (size_t)per_row;
    float *grid = cuvae_calloc(cells * d, sizeof *grid, "reconstruction grid", st);
    if (!idx || !mu || !recon || !grid) goto done;
    for (int first = 0; first < n; first += batch) {
        int b = n - first < batch ? n - first : batch;
        for (int i = 0; i < b; i++) idx[i] = first + i;
        cuvae_eval_out out = {0};
        out.mu = mu + (size_t)first * L;
        if (cuvae_backend_evaluate(be, set, idx, b, 1, 0, &out, st)) goto done;
    }
    if (cuvae_decode_all(be, m, mu, n, batch, recon, st)) goto done;
    /* Cell (2r, c) is input r*per_row + c, cell (2r+1, c) its reconstruction; cells past n stay
     * black. */
    for (int i = 0; i < n; i++) {
        int r = i / per_row, c = i % per_row;
        float *in_cell = grid + ((size_t)(2 * r) * (size_t)per_row + (size_t)c) * d;
        float *out_cell = grid + ((size_t)(2 * r + 1) * (size_t)per_row + (size_t)c) * d;
        if (data->is_float) { /* no binarization: the data are their own originals */
            memcpy(in_cell, data->pixels + (size_t)i * d * sizeof(float), d * sizeof(float));
        } else {
            const uint8_t *px = (originals ? originals : data->pixels) + (size_t)i * d;
            for (size_t p = 0; p < d; p++) in_cell[p] = (float)px[p] / 255.0f;
        }
        memcpy(out_cell, recon + (size_t)i * d, d * sizeof(float));
    }
    cuvae_to_display(m, grid, cells * d);
    /* Inputs and reconstructions are planar (C x H x W) like the dataset; the writer interleaves.
     */
    rc = cuvae_png_write_grid_styled(path, grid, (int)cells, data->channels, data->rows, data->cols,
                                     per_row, style, st);
done:
    free(idx);
    free(mu);
    free(recon);
    free(grid);
    return rc;
}

int cuvae_write_sample_grid(cuvae_backend *be, const cuvae_model *m, uint64_t seed,
                            uint64_t counter, int n, int per_row, int batch,
                            const cuvae_grid_style *style, const char *path, cuvae_status *st)
{
    if (n <= 0) return cuvae_fail(st, "%s: no samples requested", path);
    cuvae_shape x = m->x_shape;
    if ((int64_t)x.c * x.h * x.w != m->x_dim)
        return cuvae_fail(st, "%s: %dx%dx%d images do not match the model's %d values", path, x.c,
                          x.h, x.w, m->x_dim);
    size_t L = (size_t)m->latent, d = (size_t)m->x_dim;
    int rc = -1;
    float *z = cuvae_malloc((size_t)n * L * sizeof *z, "prior samples", st);
    float *xs = cuvae_malloc((size_t)n * d * sizeof *xs, "decoded samples", st);
    if (!z || !xs) goto done;
    cuvae_normal_fill(seed, CUVAE_STREAM_SAMPLE, counter, 0, z, (size_t)n * L);
    if (cuvae_decode_all(be, m, z, n, batch, xs, st)) goto done;
    cuvae_to_display(m, xs, (size_t)n * d);
    rc = cuvae_png_write_grid_styled(path, xs, n, x.c, x.h, x.w, per_row, style, st);
done:
    free(z);
    free(xs);
    return rc;
}
