/* Whole-set evaluation through the backend (see evaluate.h). */
#include "evaluate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "metrics.h"

/* Redraws the progress line at most this often on a terminal; elsewhere (a log file, a job's
 * output) writes a plain line every $CUVAE_PROGRESS_SECONDS (default 30), so that a long
 * evaluation shows it is alive. Seconds. */
#define PROGRESS_INTERVAL 0.25
#define PROGRESS_LOG_INTERVAL 30.0

static double log_interval(void)
{
    const char *v = getenv("CUVAE_PROGRESS_SECONDS");
    char *end;
    double s = v && *v ? strtod(v, &end) : -1.0;
    return v && *v && *end == '\0' && s >= 0.0 ? s : PROGRESS_LOG_INTERVAL;
}

static void draw_progress(FILE *out, int tty, int64_t done, int64_t total, int K, double elapsed)
{
    char rate[32], eta[32];
    double per_s = elapsed > 0 ? (double)done / elapsed : 0.0;
    cuvae_format_rate(rate, sizeof rate, per_s);
    if (done > 0 && per_s > 0)
        cuvae_format_duration(eta, sizeof eta, (double)(total - done) / per_s);
    else
        snprintf(eta, sizeof eta, "?");
    fprintf(out, "%seval K=%d: %lld/%lld examples (%.0f%%) %s examples/s ETA %s%s", tty ? "\r" : "",
            K, (long long)done, (long long)total,
            total > 0 ? 100.0 * (double)done / (double)total : 0.0, rate, eta,
            tty ? "\033[K" : "\n");
    fflush(out);
}

/* Bytes a value of the model's data: float32 for float data outside [0, 1] (the checkpoint's
 * input_range), else bytes. */
static size_t value_bytes(const cuvae_model *m)
{
    return m->x_lo != 0.0f || m->x_hi != 1.0f ? sizeof(float) : 1;
}

/* Sum over count values of the squared difference between the decoder's mean and the original,
 * both on the picture's scale: the data's range (0..255 bytes, or x_lo..x_hi of float data)
 * mapped to [0, 1], the mean clamped to it as the picture draws it (a NaN stays one). */
static double squared_error(const cuvae_model *m, const float *x, const uint8_t *orig, size_t count)
{
    int is_float = value_bytes(m) == sizeof(float);
    double lo = m->x_lo, span = m->x_hi > m->x_lo ? (double)m->x_hi - (double)m->x_lo : 1.0;
    double sum = 0;
    for (size_t k = 0; k < count; k++) {
        double v = ((double)x[k] - lo) / span, o;
        if (v > 1.0)
            v = 1.0;
        else if (v < 0.0)
            v = 0.0;
        if (is_float) {
            float f; /* maybe unaligned in a mapping */
            memcpy(&f, orig + k * sizeof f, sizeof f);
            o = ((double)f - lo) / span;
        } else {
            o = (double)orig[k] / 255.0;
        }
        sum += (v - o) * (v - o);
    }
    return sum;
}

int cuvae_evaluate_set(cuvae_backend *be, const cuvae_model *model, cuvae_set set, int64_t n, int K,
                       uint64_t counter, int batch, const uint8_t *originals, FILE *progress,
                       cuvae_eval_result *res, cuvae_status *st)
{
    memset(res, 0, sizeof *res);
    res->latent = model->latent;
    res->K = K;
    res->recon_mse = res->recon_psnr = NAN;
    if (n <= 0) return cuvae_fail(st, "evaluate: the set has no examples");
    if (n > INT32_MAX)
        return cuvae_fail(st, "evaluate: %lld examples: at most %d", (long long)n, INT32_MAX);
    if (K < 1) return cuvae_fail(st, "evaluate: K = %d: expected at least 1 sample", K);
    if (batch < 1) return cuvae_fail(st, "evaluate: batch = %d: expected at least 1", batch);

    /* Examples per backend call: the configured batch, cut so that examples x K rows stay within
     * what the backend takes in one call. */
    int64_t max_rows = be->eval_rows_per_call > 0 ? be->eval_rows_per_call : CUVAE_EVAL_MAX_ROWS;
    int64_t per_call = max_rows / K;
    if (per_call < 1) per_call = 1;
    if (per_call > batch) per_call = batch;
    if (per_call > n) per_call = n;
    int chunk = (int)per_call;
    int L = model->latent;

    int rc = -1;
    int32_t *idx = cuvae_malloc(sizeof *idx * (size_t)chunk, "evaluation indices", st);
    double *buf = cuvae_malloc(sizeof *buf * 4 * (size_t)chunk, "evaluation results", st);
    float *mu = cuvae_malloc(sizeof *mu * (size_t)chunk * (size_t)L, "evaluation means", st);
    double *mean = cuvae_calloc((size_t)L, sizeof *mean, "active-unit statistics", st);
    double *m2 = cuvae_calloc((size_t)L, sizeof *m2, "active-unit statistics", st);
    float *x = originals ? cuvae_malloc(sizeof *x * (size_t)chunk * (size_t)model->x_dim,
                                        "reconstructions", st)
                         : NULL;
    if (!idx || !buf || !mu || !mean || !m2 || (originals && !x)) goto done;
    double sum_sq = 0;

    int tty = progress && isatty(fileno(progress));
    double interval = tty ? PROGRESS_INTERVAL : log_interval();
    double start = cuvae_now(), last_draw = start;
    double sum_elbo = 0, sum_iw = 0, sum_rec = 0, sum_kl = 0;
    /* A first line at once: with K in the thousands the first call alone can take seconds. */
    if (tty) draw_progress(progress, 1, 0, n, K, 0.0);
    for (int64_t first = 0; first < n; first += chunk) {
        int b = (int)(n - first < chunk ? n - first : chunk);
        for (int i = 0; i < b; i++) idx[i] = (int32_t)(first + i);
        cuvae_eval_out out = {.neg_elbo = buf,
                              .neg_iw = buf + chunk,
                              .rec = buf + 2 * chunk,
                              .kl = buf + 3 * chunk,
                              .mu = mu,
                              .logvar = NULL};
        if (cuvae_backend_evaluate(be, set, idx, b, K, counter, &out, st)) {
            if (tty) fprintf(progress, "\r\033[K");
            cuvae_fail_prefix(st, "evaluate: examples %lld..%lld", (long long)first,
                              (long long)(first + b - 1));
            goto done;
        }
        if (originals) { /* the decoder's mean at mu against the originals */
            if (cuvae_backend_decode(be, mu, b, x, st)) {
                cuvae_fail_prefix(st, "reconstruction error: examples %lld..%lld", (long long)first,
                                  (long long)(first + b - 1));
                goto done;
            }
            size_t d = (size_t)model->x_dim;
            sum_sq += squared_error(model, x, originals + (size_t)first * d * value_bytes(model),
                                    (size_t)b * d);
        }
        for (int i = 0; i < b; i++) {
            if (!isfinite(out.neg_elbo[i]) || !isfinite(out.neg_iw[i])) res->nonfinite++;
            sum_elbo += out.neg_elbo[i];
            sum_iw += out.neg_iw[i];
            sum_rec += out.rec[i];
            sum_kl += out.kl[i];
            /* Welford: a numerically stable running variance of each mu_d over the set. */
            double count = (double)(first + i + 1);
            for (int d = 0; d < L; d++) {
                double x = mu[(size_t)i * (size_t)L + (size_t)d];
                double delta = x - mean[d];
                mean[d] += delta / count;
                m2[d] += delta * (x - mean[d]);
            }
        }
        double now = cuvae_now();
        if (progress && now - last_draw >= interval && first + b < n) {
            draw_progress(progress, tty, first + b, n, K, now - start);
            last_draw = now;
        }
    }
    if (tty) {
        fprintf(progress, "\r\033[K");
        fflush(progress);
    }

    res->seconds = cuvae_now() - start;
    res->n = n;
    res->neg_elbo = sum_elbo / (double)n;
    res->neg_iw = sum_iw / (double)n;
    res->rec = sum_rec / (double)n;
    res->kl = sum_kl / (double)n;
    if (originals) {
        res->recon_mse = sum_sq / ((double)n * (double)model->x_dim);
        res->recon_psnr = cuvae_psnr(res->recon_mse);
    }
    /* Population variance (divide by n), as Burda et al. compute Cov_x over the data. */
    for (int d = 0; d < L; d++)
        if (m2[d] / (double)n > CUVAE_ACTIVE_UNIT_THRESHOLD) res->active_units++;
    rc = 0;
done:
    free(idx);
    free(buf);
    free(mu);
    free(mean);
    free(m2);
    free(x);
    return rc;
}

double cuvae_psnr(double mse)
{
    return mse > 0 ? -10.0 * log10(mse) : (mse == 0 ? INFINITY : NAN);
}

int cuvae_recon_error_set(cuvae_backend *be, const cuvae_model *model, cuvae_set set,
                          const uint8_t *originals, int64_t n, int batch, cuvae_recon_error *res,
                          cuvae_status *st)
{
    memset(res, 0, sizeof *res);
    if (n <= 0) return cuvae_fail(st, "reconstruction error: the set has no examples");
    if (n > INT32_MAX)
        return cuvae_fail(st, "reconstruction error: %lld examples: at most %d", (long long)n,
                          INT32_MAX);
    int64_t max_rows = be->eval_rows_per_call > 0 ? be->eval_rows_per_call : CUVAE_EVAL_MAX_ROWS;
    int64_t per_call = batch < 1 ? 1 : batch;
    if (per_call > max_rows) per_call = max_rows;
    if (per_call > n) per_call = n;
    int chunk = (int)per_call;
    size_t L = (size_t)model->latent, d = (size_t)model->x_dim;
    int rc = -1;
    int32_t *idx = cuvae_malloc(sizeof *idx * (size_t)chunk, "reconstruction indices", st);
    float *mu = cuvae_malloc(sizeof *mu * (size_t)chunk * L, "reconstruction latents", st);
    float *x = cuvae_malloc(sizeof *x * (size_t)chunk * d, "reconstructions", st);
    if (!idx || !mu || !x) goto done;
    double sum = 0;
    for (int64_t first = 0; first < n; first += chunk) {
        int b = (int)(n - first < chunk ? n - first : chunk);
        for (int i = 0; i < b; i++) idx[i] = (int32_t)(first + i);
        cuvae_eval_out out = {.mu = mu};
        if (cuvae_backend_evaluate(be, set, idx, b, 1, 0, &out, st) ||
            cuvae_backend_decode(be, mu, b, x, st)) {
            cuvae_fail_prefix(st, "reconstruction error: examples %lld..%lld", (long long)first,
                              (long long)(first + b - 1));
            goto done;
        }
        sum += squared_error(model, x, originals + (size_t)first * d * value_bytes(model),
                             (size_t)b * d);
    }
    res->n = n;
    res->mse = sum / ((double)n * (double)d);
    res->psnr = cuvae_psnr(res->mse);
    rc = 0;
done:
    free(idx);
    free(mu);
    free(x);
    return rc;
}
