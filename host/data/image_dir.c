/* Image folders (image_dir.h): the walk that lists a folder's images in their order (with their
 * classes), the header pass that checks sizes and picks the channels, and the decode pass that
 * fills the planar N x C x H x W buffer. Peeking and loading share the first two, so both refuse
 * the same folders with the same messages; every file is read whole (at most
 * CUVAE_IMAGE_MAX_FILE bytes) and decoded from memory (image_decode.c). */
#include "image_dir.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "image_decode.h"

#define WALK_MAX_DEPTH 64

typedef struct {
    char *names; /* relative paths, each NUL-terminated */
    size_t len, cap;
    size_t *off;    /* [n] of each image's path in names */
    uint8_t *label; /* [n] class ids (with labels) */
    int64_t n, ncap;
    char **classes; /* [n_classes] */
    int n_classes;
    int64_t subdirs; /* first-level subfolders seen (ignored without labels) */
} file_list;

typedef struct {
    dev_t dev;
    ino_t ino;
} dir_id;

static void list_free(file_list *l)
{
    free(l->names);
    free(l->off);
    free(l->label);
    for (int i = 0; i < l->n_classes; i++) free(l->classes[i]);
    free(l->classes);
    memset(l, 0, sizeof *l);
}

static int list_add(file_list *l, const char *rel, int label, cuvae_status *st)
{
    size_t k = strlen(rel) + 1;
    if (l->n == l->ncap) {
        if (l->n >= INT32_MAX)
            return cuvae_fail(st, "more than %d images in the folder", INT32_MAX);
        int64_t nc = l->ncap ? 2 * l->ncap : 256;
        size_t *no = realloc(l->off, (size_t)nc * sizeof *no);
        if (no) l->off = no;
        uint8_t *nl = realloc(l->label, (size_t)nc);
        if (nl) l->label = nl;
        if (!no || !nl) return cuvae_fail(st, "out of memory listing images");
        l->ncap = nc;
    }
    if (l->len + k > l->cap) {
        size_t nc = l->cap ? 2 * l->cap : 4096;
        while (nc < l->len + k) nc *= 2;
        char *nn = realloc(l->names, nc);
        if (!nn) return cuvae_fail(st, "out of memory listing images");
        l->names = nn;
        l->cap = nc;
    }
    memcpy(l->names + l->len, rel, k);
    l->off[l->n] = l->len;
    l->label[l->n] = (uint8_t)label;
    l->len += k;
    l->n++;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int has_image_suffix(const char *name)
{
    static const char *const sfx[] = {".png", ".jpg", ".jpeg", ".jpe", ".jfif"};
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof sfx / sizeof sfx[0]; i++) {
        size_t k = strlen(sfx[i]);
        if (n > k && strcasecmp(name + n - k, sfx[i]) == 0) return 1;
    }
    return 0;
}

/* The sorted names in a directory, hidden ones ('.' first) left out. */
static int read_names(const char *path, char ***out, size_t *count, cuvae_status *st)
{
    DIR *d = opendir(path);
    if (!d) return cuvae_fail(st, "%s: cannot open the folder: %s", path, strerror(errno));
    char **v = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *e;
    errno = 0;
    while (!rc && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            size_t nc = cap ? 2 * cap : 64;
            char **nv = realloc(v, nc * sizeof *nv);
            if (!nv) {
                rc = cuvae_fail(st, "%s: out of memory listing the folder", path);
                break;
            }
            v = nv;
            cap = nc;
        }
        v[n] = strdup(e->d_name);
        if (!v[n])
            rc = cuvae_fail(st, "%s: out of memory listing the folder", path);
        else
            n++;
    }
    if (!rc && errno) rc = cuvae_fail(st, "%s: cannot list the folder: %s", path, strerror(errno));
    closedir(d);
    if (rc) {
        for (size_t i = 0; i < n; i++) free(v[i]);
        free(v);
        return -1;
    }
    if (n) qsort(v, n, sizeof *v, cmp_str);
    *out = v;
    *count = n;
    return 0;
}

static int join(char *out, size_t len, const char *a, const char *b, cuvae_status *st)
{
    if ((size_t)snprintf(out, len, "%s%s%s", a, a[0] ? "/" : "", b) >= len)
        return cuvae_fail(st, "%s/%s: path longer than %zu bytes", a, b, len - 1);
    return 0;
}

/* 1: a PNG or JPEG by content; 0: ignored; -1: error (an image name without image content). */
static int classify(const char *path, const char *name, cuvae_status *st)
{
    FILE *f = fopen(path, "rb");
    if (!f) return cuvae_fail(st, "%s: cannot open: %s", path, strerror(errno));
    uint8_t head[8];
    size_t n = fread(head, 1, sizeof head, f);
    fclose(f);
    if (cuvae_image_sniff(head, n) != CUVAE_IMAGE_NONE) return 1;
    if (has_image_suffix(name))
        return cuvae_fail(st, "%s: named as an image but %s", path,
                          n == 0 ? "empty" : "neither PNG nor JPEG (by its first bytes)");
    return 0;
}

/* Adds the images under root/rel (depth first, sorted); recurses when `deep`. `seen` holds the
 * directories on the way down, so that a symbolic link back up is refused, not followed forever.
 */
static int walk(file_list *l, const char *root, const char *rel, int deep, int label, dir_id *seen,
                int depth, cuvae_status *st)
{
    char path[PATH_MAX], sub[PATH_MAX], full[PATH_MAX];
    if (join(path, sizeof path, root, rel, st)) return -1;
    if (!rel[0]) snprintf(path, sizeof path, "%s", root);
    struct stat sb;
    if (stat(path, &sb)) return cuvae_fail(st, "%s: %s", path, strerror(errno));
    for (int i = 0; i < depth; i++)
        if (seen[i].dev == sb.st_dev && seen[i].ino == sb.st_ino)
            return cuvae_fail(st, "%s: a folder inside itself (a symbolic link loop)", path);
    if (depth >= WALK_MAX_DEPTH)
        return cuvae_fail(st, "%s: folders nested more than %d deep", path, WALK_MAX_DEPTH);
    seen[depth] = (dir_id){sb.st_dev, sb.st_ino};
    char **names = NULL;
    size_t count = 0;
    if (read_names(path, &names, &count, st)) return -1;
    int rc = 0;
    for (size_t i = 0; i < count && !rc; i++) {
        if (join(sub, sizeof sub, rel, names[i], st) || join(full, sizeof full, root, sub, st)) {
            rc = -1;
            break;
        }
        if (stat(full, &sb)) {
            rc = cuvae_fail(st, "%s: %s", full, strerror(errno));
        } else if (S_ISDIR(sb.st_mode)) {
            if (deep)
                rc = walk(l, root, sub, deep, label, seen, depth + 1, st);
            else if (depth == 0)
                l->subdirs++;
        } else if (S_ISREG(sb.st_mode)) {
            int k = classify(full, names[i], st);
            if (k < 0)
                rc = -1;
            else if (k > 0)
                rc = list_add(l, sub, label, st);
        }
    }
    for (size_t i = 0; i < count; i++) free(names[i]);
    free(names);
    return rc;
}

/* The folder's images; with labels, each first-level subfolder is a class. */
static int list_images(file_list *l, const char *dir, int labels, cuvae_status *st)
{
    memset(l, 0, sizeof *l);
    dir_id seen[WALK_MAX_DEPTH + 1];
    if (!labels) {
        if (walk(l, dir, "", 0, 0, seen, 0, st)) goto fail;
        if (l->n > 0) return 0;
        cuvae_fail(st, "%s: no PNG or JPEG images in the folder%s", dir,
                   l->subdirs ? " (its subfolders are read only with data.folder_labels = 1, as "
                                "classes)"
                              : "");
        goto fail;
    }
    char **names = NULL, full[PATH_MAX];
    size_t count = 0;
    if (read_names(dir, &names, &count, st)) goto fail;
    int rc = 0;
    struct stat sb;
    struct stat top;
    if (stat(dir, &top)) rc = cuvae_fail(st, "%s: %s", dir, strerror(errno));
    seen[0] = (dir_id){top.st_dev, top.st_ino};
    for (size_t i = 0; i < count && !rc; i++) {
        if (join(full, sizeof full, dir, names[i], st)) {
            rc = -1;
        } else if (stat(full, &sb)) {
            rc = cuvae_fail(st, "%s: %s", full, strerror(errno));
        } else if (S_ISDIR(sb.st_mode)) {
            if (l->n_classes == CUVAE_IMAGE_MAX_CLASSES) {
                rc = cuvae_fail(st, "%s: more than %d subfolders (classes): labels are bytes", dir,
                                CUVAE_IMAGE_MAX_CLASSES);
                break;
            }
            char **nc = realloc(l->classes, (size_t)(l->n_classes + 1) * sizeof *nc);
            if (!nc) {
                rc = cuvae_fail(st, "%s: out of memory listing classes", dir);
                break;
            }
            l->classes = nc;
            l->classes[l->n_classes] = names[i];
            names[i] = NULL;
            int id = l->n_classes++;
            rc = walk(l, dir, l->classes[id], 1, id, seen, 1, st);
        } else if (S_ISREG(sb.st_mode)) {
            int k = classify(full, names[i], st);
            if (k < 0)
                rc = -1;
            else if (k > 0)
                rc = cuvae_fail(st,
                                "%s: an image directly in the folder, but data.folder_labels = 1 "
                                "labels images by their subfolder",
                                full);
        }
    }
    for (size_t i = 0; i < count; i++) free(names[i]);
    free(names);
    if (rc) goto fail;
    if (l->n == 0) {
        cuvae_fail(st, "%s: no PNG or JPEG images in its %d subfolders (classes)", dir,
                   l->n_classes);
        goto fail;
    }
    return 0;
fail:
    list_free(l);
    return -1;
}

/* The whole file, at most CUVAE_IMAGE_MAX_FILE bytes. */
static int read_file(const char *path, uint8_t **out, size_t *len, cuvae_status *st)
{
    FILE *f = fopen(path, "rb");
    if (!f) return cuvae_fail(st, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    int rc = -1;
    uint8_t *buf = NULL;
    if (fstat(fileno(f), &sb)) {
        cuvae_fail(st, "%s: %s", path, strerror(errno));
    } else if (sb.st_size > CUVAE_IMAGE_MAX_FILE) {
        cuvae_fail(st, "%s: %lld bytes, more than the %lld an image file may have", path,
                   (long long)sb.st_size, (long long)CUVAE_IMAGE_MAX_FILE);
    } else if ((buf = cuvae_malloc((size_t)sb.st_size + 1, "an image file", st)) != NULL) {
        size_t n = fread(buf, 1, (size_t)sb.st_size + 1, f);
        if (ferror(f))
            cuvae_fail(st, "%s: read error: %s", path, strerror(errno));
        else if (n != (size_t)sb.st_size)
            cuvae_fail(st, "%s: changed while being read", path);
        else
            rc = 0;
    } else {
        cuvae_fail_prefix(st, "%s", path);
    }
    fclose(f);
    if (rc) {
        free(buf);
        return -1;
    }
    *out = buf;
    *len = (size_t)sb.st_size;
    return 0;
}

/* What the header pass finds: the kept images' headers and the set's shape. */
typedef struct {
    file_list files;
    cuvae_image_info *info; /* [files.n] */
    int64_t n_kept;
    int channels, rows, cols;
    uint64_t staging;
} dir_scan;

static void scan_free(dir_scan *s)
{
    list_free(&s->files);
    free(s->info);
    memset(s, 0, sizeof *s);
}

static const char *file_name(const dir_scan *s, int64_t i)
{
    return s->files.names + s->files.off[i];
}

static int scan_dir(dir_scan *s, const char *dir, const cuvae_image_opts *o, int64_t limit,
                    cuvae_status *st)
{
    memset(s, 0, sizeof *s);
    if (list_images(&s->files, dir, o->labels, st)) return -1;
    int64_t n = s->files.n;
    s->n_kept = limit > 0 && limit < n ? limit : n;
    /* Every image's header, the ones past the limit too: the set's shape and channels are the
     * folder's, whatever part of it is kept. */
    s->info = cuvae_malloc((size_t)n * sizeof *s->info, "image headers", st);
    if (!s->info) goto fail;
    int colour = 0;
    uint64_t most = 0;
    for (int64_t i = 0; i < n; i++) {
        char path[PATH_MAX];
        uint8_t *buf;
        size_t len;
        if (join(path, sizeof path, dir, file_name(s, i), st) || read_file(path, &buf, &len, st))
            goto fail;
        int rc = cuvae_image_header(buf, len, path, &s->info[i], st);
        free(buf);
        if (rc) goto fail;
        const cuvae_image_info *a = &s->info[0], *b = &s->info[i];
        if (!o->rows && (a->width != b->width || a->height != b->height)) {
            cuvae_fail(st,
                       "%s: images of different sizes: %s is %d x %d (H x W) but %s is %d x %d; "
                       "set data.image_size to resize and centre-crop them",
                       dir, file_name(s, 0), a->height, a->width, file_name(s, i), b->height,
                       b->width);
            goto fail;
        }
        colour |= b->colour;
        uint64_t px = (uint64_t)b->width * (uint64_t)b->height;
        /* the file, its pixels (at most 4 channels decoded, 3 kept), a resize row of doubles */
        uint64_t need = (uint64_t)len + px * 7 + (uint64_t)b->width * 3 * sizeof(double);
        if (need > most) most = need;
    }
    s->channels = o->channels ? o->channels : colour ? 3 : 1;
    s->rows = o->rows ? o->rows : s->info[0].height;
    s->cols = o->cols ? o->cols : s->info[0].width;
    s->staging = most;
    if ((int64_t)s->channels * s->rows * s->cols > INT_MAX) {
        cuvae_fail(st, "%s: images of %d x %d x %d: more than %d values an example", dir, s->rows,
                   s->cols, s->channels, INT_MAX);
        goto fail;
    }
    return 0;
fail:
    scan_free(s);
    return -1;
}

/* The folder's path without trailing '/' (but "/" stays), so that file names join cleanly. */
static int trim_dir(const char *dir, char *out, size_t len, cuvae_status *st)
{
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    if (n >= len) return cuvae_fail(st, "%s: path longer than %zu bytes", dir, len - 1);
    memcpy(out, dir, n);
    out[n] = '\0';
    return 0;
}

int cuvae_image_dir_is(const char *path)
{
    struct stat sb;
    return path && *path && stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

void cuvae_image_opts_from_config(cuvae_image_opts *o, const cuvae_config *c)
{
    memset(o, 0, sizeof *o);
    if (cuvae_parse_image_size(c->data.image_size, &o->rows, &o->cols)) o->rows = o->cols = 0;
    o->filter = c->data.resize_filter;
    o->channels = c->data.image_channels == 1 ? 1 : c->data.image_channels == 2 ? 3 : 0;
    o->labels = c->data.folder_labels;
}

int cuvae_image_dir_peek(const char *dir, const cuvae_image_opts *o, int64_t limit, int64_t *n_kept,
                         int64_t *n_file, int *channels, int *rows, int *cols, uint64_t *staging,
                         cuvae_status *st)
{
    dir_scan s;
    char root[PATH_MAX];
    if (trim_dir(dir, root, sizeof root, st) || scan_dir(&s, root, o, limit, st)) return -1;
    *n_kept = s.n_kept;
    *n_file = s.files.n;
    *channels = s.channels;
    *rows = s.rows;
    *cols = s.cols;
    *staging = s.staging;
    scan_free(&s);
    return 0;
}

/* Interleaved to planar, same size. */
static void to_planar(const uint8_t *in, int hw, int channels, uint8_t *out)
{
    for (int c = 0; c < channels; c++)
        for (int p = 0; p < hw; p++)
            out[(size_t)c * (size_t)hw + (size_t)p] = in[(size_t)p * (size_t)channels + (size_t)c];
}

static int decode_all(cuvae_dataset *ds, const dir_scan *s, const char *dir,
                      const cuvae_image_opts *o, cuvae_status *st)
{
    size_t d = (size_t)ds->d;
    for (int64_t i = 0; i < s->n_kept; i++) {
        const cuvae_image_info *in = &s->info[i];
        char path[PATH_MAX];
        uint8_t *buf = NULL, *px = NULL;
        size_t len;
        if (join(path, sizeof path, dir, file_name(s, i), st) || read_file(path, &buf, &len, st))
            return -1;
        size_t n = (size_t)in->width * (size_t)in->height * (size_t)ds->channels;
        px = cuvae_malloc(n, "decoded pixels", st);
        int rc = px ? cuvae_image_decode(buf, len, path, ds->channels, in, px, st) : -1;
        uint8_t *dst = ds->pixels + (size_t)i * d;
        if (!rc && in->width == ds->cols && in->height == ds->rows)
            to_planar(px, ds->rows * ds->cols, ds->channels, dst);
        else if (!rc)
            rc = cuvae_image_resize(px, in->width, in->height, ds->channels, ds->rows, ds->cols,
                                    o->filter, dst, st);
        free(buf);
        free(px);
        if (rc) return -1;
    }
    return 0;
}

int cuvae_image_dir_load(cuvae_dataset *ds, const char *dir, const cuvae_image_opts *o,
                         int64_t limit, int64_t *n_file, cuvae_status *st)
{
    memset(ds, 0, sizeof *ds);
    dir_scan s;
    char root[PATH_MAX];
    if (trim_dir(dir, root, sizeof root, st) || scan_dir(&s, root, o, limit, st)) return -1;
    ds->n = s.n_kept;
    ds->channels = s.channels;
    ds->rows = s.rows;
    ds->cols = s.cols;
    ds->d = s.channels * s.rows * s.cols;
    ds->pixels = cuvae_malloc((size_t)ds->n * (size_t)ds->d, "image pixels", st);
    int rc = ds->pixels ? decode_all(ds, &s, root, o, st) : -1;
    if (!rc && o->labels) {
        ds->labels = cuvae_malloc((size_t)ds->n, "image labels", st);
        ds->class_names =
            cuvae_calloc((size_t)s.files.n_classes, sizeof *ds->class_names, "class names", st);
        if (!ds->labels || !ds->class_names) {
            rc = -1;
        } else {
            memcpy(ds->labels, s.files.label, (size_t)ds->n);
            for (int k = 0; k < s.files.n_classes; k++) {
                ds->class_names[k] = s.files.classes[k];
                s.files.classes[k] = NULL;
            }
            ds->n_classes = s.files.n_classes;
        }
    }
    *n_file = s.files.n;
    scan_free(&s);
    if (rc) cuvae_dataset_free(ds);
    return rc;
}
