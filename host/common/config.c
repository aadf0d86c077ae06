/* Run configuration: value parsing with range checks, INI files through inih, command-line
 * overrides and the cross-key checks. The keys are in config_keys.c; printing (resolved INI, key
 * reference, resume report) is in config_text.c. */
#include "config.h"
#include "config_keys.h"
#include "file_write.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <ini.h>

#define N_KEYS CUVAE_CONFIG_N_KEYS
#define SPEC_TEXT_MAX 190 /* a layer stack's text: one INI line (inih reads 198 characters) */

/* ---- values ------------------------------------------------------------------------------- */

static int in_range(const cuvae_key_spec *k, double v)
{
    if (k->flags & CUVAE_KEY_MIN_OPEN ? !(v > k->min) : !(v >= k->min)) return 0;
    if (k->flags & CUVAE_KEY_NO_MAX) return 1;
    return k->flags & CUVAE_KEY_MAX_OPEN ? v < k->max : v <= k->max;
}

static int parse_long(const char *s, long *out)
{
    char *end;
    if (!*s || (*s != '-' && *s != '+' && (*s < '0' || *s > '9'))) return -1;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end) return -1;
    *out = v;
    return 0;
}

static int is_space(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* A string the INI reader would read back differently (a comment, control characters) is
 * refused, so that cuvae_config_to_ini stays faithful. */
static const char *string_problem(const char *v)
{
    if (*v == ';') return "a leading ';' (an INI comment)";
    for (const char *p = v; *p; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f) return "a control character";
        if (*p == ';' && p > v && is_space(p[-1])) return "' ;' (an INI comment)";
    }
    if (is_space(*v) || (*v && is_space(v[strlen(v) - 1]))) return "leading or trailing blanks";
    /* The config text goes into every checkpoint as a JSON string, which must be UTF-8: a path
     * that could never be saved is refused now, not after an epoch of training. */
    if (!cuvae_utf8_valid(v, strlen(v))) return "bytes that are not UTF-8";
    return NULL;
}

static int set_string(const cuvae_key_spec *k, cuvae_config *c, const char *v, char *why,
                      size_t why_len)
{
    size_t n = strlen(v);
    if (n > CUVAE_PATH_LEN - 1) {
        snprintf(why, why_len, "expected a path of at most %d characters, got %zu characters",
                 CUVAE_PATH_LEN - 1, n);
        return -1;
    }
    const char *bad = string_problem(v);
    if (bad) {
        char shown[4 * CUVAE_PATH_LEN];
        cuvae_escape(v, shown, sizeof shown);
        snprintf(why, why_len, "expected a path without %s, got '%.500s'", bad, shown);
        return -1;
    }
    int rows, cols;
    if (!strcmp(k->section, "data") && !strcmp(k->key, "image_size") &&
        cuvae_parse_image_size(v, &rows, &cols)) {
        char shown[4 * CUVAE_PATH_LEN];
        cuvae_escape(v, shown, sizeof shown);
        char allowed[100];
        cuvae_key_allowed(k, allowed, sizeof allowed);
        snprintf(why, why_len, "expected %s (e.g. 64 or 48x64), got '%.300s'", allowed, shown);
        return -1;
    }
    memcpy((char *)c + k->offset, v, n + 1);
    return 0;
}

/* A side: decimal digits only, in [1, CUVAE_IMAGE_SIZE_MAX]; *end after it. */
static int image_side(const char *p, const char **end)
{
    long v = 0;
    const char *q = p;
    while (*q >= '0' && *q <= '9' && v <= CUVAE_IMAGE_SIZE_MAX) v = v * 10 + (*q++ - '0');
    *end = q;
    return q == p || v < 1 || v > CUVAE_IMAGE_SIZE_MAX ? -1 : (int)v;
}

int cuvae_parse_image_size(const char *v, int *rows, int *cols)
{
    if (!*v) {
        *rows = *cols = 0;
        return 0;
    }
    const char *end;
    int h = image_side(v, &end), w = h;
    if (h < 0) return -1;
    if (*end == 'x') {
        w = image_side(end + 1, &end);
        if (w < 0) return -1;
    }
    if (*end) return -1;
    *rows = h;
    *cols = w;
    return 0;
}

static int parse_list(const cuvae_key_spec *k, const char *v, int *vals, int *count)
{
    int n = 0;
    const char *p = v;
    while (is_space(*p)) p++;
    if (!*p) {
        *count = 0;
        return 0;
    }
    for (;;) {
        char item[32];
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        while (len && is_space(p[len - 1])) len--;
        while (len && is_space(*p)) p++, len--;
        if (len == 0 || len >= sizeof item || n == CUVAE_MAX_HIDDEN) return -1;
        memcpy(item, p, len);
        item[len] = '\0';
        long x;
        if (parse_long(item, &x) || !in_range(k, (double)x)) return -1;
        vals[n++] = (int)x;
        if (!e) break;
        p = e + 1;
    }
    *count = n;
    return 0;
}

/* Parses v into k's field of c. On failure writes "expected ..., got '...'" to why. */
static int set_value(const cuvae_key_spec *k, cuvae_config *c, const char *v, char *why,
                     size_t why_len)
{
    void *field = (char *)c + k->offset;
    int ok = 0;
    switch (k->type) {
    case CUVAE_KEY_INT: {
        long x;
        if (!parse_long(v, &x) && in_range(k, (double)x)) {
            *(int *)field = (int)x;
            ok = 1;
        }
        break;
    }
    case CUVAE_KEY_U64: {
        char *end;
        if (*v >= '0' && *v <= '9') {
            errno = 0;
            unsigned long long x = strtoull(v, &end, 10);
            if (!errno && !*end && x <= UINT64_MAX) {
                *(uint64_t *)field = (uint64_t)x;
                ok = 1;
            }
        }
        break;
    }
    case CUVAE_KEY_FLOAT: {
        char *end;
        if (*v && !is_space(*v)) {
            errno = 0;
            float x = strtof(v, &end);
            /* ERANGE with a non-zero result is a subnormal: representable, kept. Overflow and
             * underflow to zero are refused rather than silently changed. */
            int range_ok = !errno || (errno == ERANGE && isfinite(x) && x != 0.0f);
            if (range_ok && !*end && isfinite(x) && in_range(k, x)) {
                *(float *)field = x;
                ok = 1;
            }
        }
        break;
    }
    case CUVAE_KEY_BOOL: {
        static const char *const yes[] = {"1", "true", "yes"}, *const no[] = {"0", "false", "no"};
        for (int i = 0; i < 3; i++) {
            if (!strcasecmp(v, yes[i])) *(int *)field = 1, ok = 1;
            if (!strcasecmp(v, no[i])) *(int *)field = 0, ok = 1;
        }
        break;
    }
    case CUVAE_KEY_ENUM:
        for (int i = 0; k->names[i]; i++) {
            if (!strcasecmp(v, k->names[i])) {
                *(int *)field = i;
                ok = 1;
            }
        }
        break;
    case CUVAE_KEY_STRING:
        return set_string(k, c, v, why, why_len);
    case CUVAE_KEY_INT_LIST: {
        int vals[CUVAE_MAX_HIDDEN] = {0}, n;
        if (!parse_list(k, v, vals, &n)) {
            memcpy(field, vals, sizeof vals);
            *(int *)((char *)c + k->offset2) = n;
            ok = 1;
        }
        break;
    }
    case CUVAE_KEY_LAYERS: {
        cuvae_stack_spec spec;
        char layers_why[400], canon[1024];
        if (cuvae_stack_spec_parse(v, &spec, layers_why, sizeof layers_why)) {
            snprintf(why, why_len, "%.300s (in '%.300s')", layers_why, v);
            return -1;
        }
        /* The saved config writes it on one INI line. */
        cuvae_stack_spec_format(&spec, canon, sizeof canon);
        if (strlen(canon) > SPEC_TEXT_MAX) {
            snprintf(why, why_len, "the layers take %zu characters written out, at most %d",
                     strlen(canon), SPEC_TEXT_MAX);
            return -1;
        }
        memcpy(field, &spec, sizeof spec);
        return 0;
    }
    }
    if (!ok) {
        char allowed[256];
        cuvae_key_allowed(k, allowed, sizeof allowed);
        snprintf(why, why_len, "expected %s, got '%s'", allowed, v);
        return -1;
    }
    return 0;
}

void cuvae_config_defaults(cuvae_config *c)
{
    /* Zeroed first so padding and unused hidden entries compare equal after any round trip. */
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < N_KEYS; i++) {
        char why[512];
        /* The table's defaults are checked by test_config; a bad one leaves the field zero. */
        (void)set_value(&cuvae_config_keys[i], c, cuvae_config_keys[i].def, why, sizeof why);
    }
}

/* ---- key lookup and suggestions ----------------------------------------------------------- */

static int find_section(const char *name)
{
    for (size_t i = 0; i < cuvae_config_n_sections; i++)
        if (!strcmp(name, cuvae_config_sections[i])) return (int)i;
    return -1;
}

static int find_key(const char *section, const char *key)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (!strcmp(section, cuvae_config_keys[i].section) &&
            !strcmp(key, cuvae_config_keys[i].key))
            return (int)i;
    return -1;
}

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64) return (size_t)-1;
    size_t row[65];
    for (size_t j = 0; j <= lb; j++) row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* " (did you mean 'epochs'?)" for a near miss in the same section, " (did you mean 'optim.lr'?)"
 * for a key that lives in another section; empty when nothing is close. */
static void suggest_key(const char *section, const char *key, char *buf, size_t len)
{
    size_t limit = strlen(key) <= 3 ? 1 : strlen(key) <= 6 ? 2 : 3;
    const cuvae_key_spec *best = NULL;
    size_t best_d = limit + 1;
    for (size_t i = 0; i < N_KEYS; i++) {
        const cuvae_key_spec *k = &cuvae_config_keys[i];
        /* Another section's key costs one edit more, so a same-section near miss wins ties. */
        size_t d = edit_distance(key, k->key) + (strcmp(k->section, section) != 0);
        if (d < best_d) best = k, best_d = d;
    }
    buf[0] = '\0';
    if (!best) return;
    if (!strcmp(best->section, section))
        snprintf(buf, len, " (did you mean '%s'?)", best->key);
    else
        snprintf(buf, len, " (did you mean '%s.%s'?)", best->section, best->key);
}

static void section_list(char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < cuvae_config_n_sections && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? ", " : "",
                                 cuvae_config_sections[i]);
}

/* ---- INI input ---------------------------------------------------------------------------- */

/* State of one parse. inih (Debian's build) reports no line numbers to the handler, so the reader
 * counts the lines it hands out: the handler runs right after the reader returned its line. */
typedef struct {
    cuvae_config *c;
    const char *origin;
    const char *text;
    size_t len, pos;
    int line;              /* line last handed to inih (1-based) */
    const char *line_text; /* that line in text, and its length without the newline */
    size_t line_len;
    int indented;     /* the line starts with a blank (inih: continuation of the previous key) */
    int last_key;     /* key set since the last section header (-1: none): continuation target */
    int seen[N_KEYS]; /* line where each key was set, 0 = not set */
    int err_line;     /* first error found by the reader or handler, 0 = none */
    cuvae_status err;
} ini_ctx;

static int ctx_fail(ini_ctx *x, const char *fmt, const char *a, const char *b, const char *d)
{
    char tail[900];
    snprintf(tail, sizeof tail, fmt, a, b, d);
    x->err_line = x->line;
    cuvae_fail(&x->err, "%s:%d: %s", x->origin, x->line, tail);
    return 0;
}

static char *config_read_line(char *str, int num, void *stream)
{
    ini_ctx *x = stream;
    if (x->err_line || x->pos >= x->len) return NULL;
    const char *s = x->text + x->pos;
    /* A line ends at LF, CRLF or a lone CR (old Mac files): a CR-only file is read line by line,
     * not as one line whose rest inih would drop. */
    size_t left = x->len - x->pos, n = 0;
    while (n < left && s[n] != '\n' && s[n] != '\r') n++;
    size_t eol = n < left ? (s[n] == '\r' && n + 1 < left && s[n + 1] == '\n' ? 2 : 1) : 0;
    x->pos += n + eol;
    x->line++;
    x->line_text = s;
    x->line_len = n;
    if (memchr(s, '\0', n)) {
        ctx_fail(x, "NUL byte in the line (not a text file?)", "", "", "");
        return NULL;
    }
    /* inih's buffer holds num-1 characters including the newline; a longer line would be cut and
     * its rest read as another line. */
    if (n > (size_t)num - 2) {
        char what[96];
        snprintf(what, sizeof what, "line too long (%zu characters; at most %d)", n, num - 2);
        ctx_fail(x, "%s", what, "", "");
        return NULL;
    }
    size_t skip = 0;
    if (x->line == 1 && n >= 3 && !memcmp(s, "\xEF\xBB\xBF", 3)) skip = 3;
    x->indented = n > skip && is_space(s[skip]);
    size_t b = skip;
    while (b < n && is_space(s[b])) b++;
    /* A section header, as inih sees one: an indented '[' right after a key is a continuation. */
    if (b < n && s[b] == '[' && !(x->indented && x->last_key >= 0)) {
        const char *close = memchr(s + b, ']', n - b);
        x->last_key = -1;
        if (close) {
            /* inih ignores whatever follows the ']'; only a comment may. */
            const char *after = close + 1, *end = s + n;
            while (after < end && is_space(*after)) after++;
            if (after < end && *after != ';' && *after != '#') {
                ctx_fail(x, "text after the section header (put each key = value on its own line)",
                         "", "", "");
                return NULL;
            }
            char name[200];
            size_t m = (size_t)(close - (s + b + 1));
            memcpy(name, s + b + 1, m);
            name[m] = '\0';
            if (find_section(name) < 0) {
                char list[128];
                section_list(list, sizeof list);
                ctx_fail(x, "unknown section [%s] (sections: %s)", name, list, "");
                return NULL;
            }
        }
    }
    memcpy(str, s, n);
    str[n] = '\n';
    str[n + 1] = '\0';
    return str;
}

static int config_on_key(void *user, const char *section, const char *name, const char *value)
{
    ini_ctx *x = user;
    char why[700], full[128];
    if (x->err_line) return 0;
    if (x->indented && x->last_key >= 0) {
        /* inih joins an indented line to the previous key. Only paths may continue that way
         * (cuvae_config_to_ini splits long ones); anywhere else it is a stray indentation. */
        const cuvae_key_spec *k = &cuvae_config_keys[x->last_key];
        snprintf(full, sizeof full, "%s.%s", k->section, k->key);
        if (k->type != CUVAE_KEY_STRING)
            return ctx_fail(x,
                            "indented line is read as a continuation of %s; remove the "
                            "indentation",
                            full, "", "");
        char joined[2 * CUVAE_PATH_LEN];
        snprintf(joined, sizeof joined, "%s%s", (char *)x->c + k->offset, value);
        if (set_string(k, x->c, joined, why, sizeof why))
            return ctx_fail(x, "%s: %s", full, why, "");
        return 1;
    }
    if (!*name) return ctx_fail(x, "missing key name before '='", "", "", "");
    if (!*section) return ctx_fail(x, "key '%s' comes before any [section]", name, "", "");
    int ki = find_key(section, name);
    if (ki < 0) {
        char hint[160];
        suggest_key(section, name, hint, sizeof hint);
        return ctx_fail(x, "unknown key '%s' in [%s]%s", name, section, hint);
    }
    const cuvae_key_spec *k = &cuvae_config_keys[ki];
    snprintf(full, sizeof full, "%s.%s", k->section, k->key);
    if (x->seen[ki]) {
        char lines[64];
        snprintf(lines, sizeof lines, "%d and %d", x->seen[ki], x->line);
        return ctx_fail(x, "%s is given twice (lines %s)", full, lines, "");
    }
    x->seen[ki] = x->line;
    x->last_key = ki;
    if (set_value(k, x->c, value, why, sizeof why)) return ctx_fail(x, "%s: %s", full, why, "");
    return 1;
}

/* model.encoder replaces model.hidden: where a text (or an override) sets the encoder and not
 * hidden, hidden's layers (its default included) are dropped; where it sets both, non-empty, it
 * is an error. enc_line and hidden_line: where each was set (0: not set; -1: the command line). */
static int encoder_replaces_hidden(cuvae_config *c, int enc_line, int hidden_line,
                                   const char *origin, cuvae_status *st)
{
    if (c->model.encoder.n == 0 || c->model.n_hidden == 0) return 0;
    if (enc_line && !hidden_line) {
        c->model.n_hidden = 0;
        memset(c->model.hidden, 0, sizeof c->model.hidden);
        return 0;
    }
    if (enc_line > 0 && hidden_line > 0)
        return cuvae_fail(st,
                          "%s:%d: model.hidden (line %d) and model.encoder (line %d) both describe "
                          "the encoder; give one (model.hidden is the MLP shorthand)",
                          origin, enc_line > hidden_line ? enc_line : hidden_line, hidden_line,
                          enc_line);
    return cuvae_fail(st,
                      "%s: model.hidden and model.encoder both describe the encoder; give one "
                      "(model.hidden is the MLP shorthand)",
                      origin);
}

/* Parses text over a copy of c; c changes only when the whole text is good. */
static int load_text(cuvae_config *c, const char *text, size_t len, const char *origin,
                     int *dir_set, cuvae_status *st)
{
    ini_ctx *x = calloc(1, sizeof *x);
    cuvae_config *work = malloc(sizeof *work);
    if (!x || !work) {
        free(x);
        free(work);
        return cuvae_fail(st, "%s: out of memory reading the config", origin);
    }
    memcpy(work, c, sizeof *work);
    x->c = work;
    x->origin = origin;
    x->text = text;
    x->len = len;
    x->last_key = -1;
    int ret = ini_parse_stream(config_read_line, x, config_on_key, x);
    int rc = 0;
    if (ret > 0 && (!x->err_line || ret < x->err_line))
        rc = cuvae_fail(st,
                        "%s:%d: malformed line (expected [section], key = value, or a comment "
                        "starting with ; or #)",
                        origin, ret);
    else if (x->err_line)
        rc = cuvae_fail(st, "%s", x->err.msg);
    else if (ret < 0)
        rc = cuvae_fail(st, "%s: out of memory reading the config", origin);
    if (!rc)
        rc = encoder_replaces_hidden(work, x->seen[find_key("model", "encoder")],
                                     x->seen[find_key("model", "hidden")], origin, st);
    if (!rc) {
        if (dir_set) *dir_set = x->seen[find_key("output", "dir")] != 0;
        memcpy(c, work, sizeof *c);
    }
    free(x);
    free(work);
    return rc;
}

int cuvae_config_load_string(cuvae_config *c, const char *text, const char *origin,
                             cuvae_status *st)
{
    return load_text(c, text, strlen(text), origin ? origin : "config", NULL, st);
}

/* A relative data path of a config file names a file next to it: prefixed with the file's
 * directory, made absolute (the working directory's too), so that the run directory's saved
 * config.ini still finds the data from elsewhere. Overrides on the command line stay relative to
 * the working directory, as shells expect. */
static int resolve_data_paths(cuvae_config *c, const char *path, cuvae_status *st)
{
    char *keys[4] = {c->data.train_images, c->data.train_labels, c->data.test_images,
                     c->data.test_labels};
    static const char *const names[4] = {"train_images", "train_labels", "test_images",
                                         "test_labels"};
    const char *slash = strrchr(path, '/');
    char dir[2 * CUVAE_PATH_LEN];
    if (slash && path[0] == '/') {
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    } else {
        char cwd[CUVAE_PATH_LEN];
        if (!getcwd(cwd, sizeof cwd)) cwd[0] = '\0';
        if (slash)
            snprintf(dir, sizeof dir, "%s/%.*s", cwd, (int)(slash - path), path);
        else
            snprintf(dir, sizeof dir, "%s", cwd);
    }
    for (int k = 0; k < 4; k++) {
        if (!keys[k][0] || keys[k][0] == '/') continue;
        char joined[3 * CUVAE_PATH_LEN];
        const char *rel = keys[k][0] == '.' && keys[k][1] == '/' ? keys[k] + 2 : keys[k];
        snprintf(joined, sizeof joined, "%s/%s", dir, rel);
        if (strlen(joined) >= CUVAE_PATH_LEN)
            return cuvae_fail(st,
                              "%s: data.%s: '%s' resolved against the config file's directory is "
                              "'%s', longer than %d bytes",
                              path, names[k], keys[k], joined, CUVAE_PATH_LEN - 1);
        memcpy(keys[k], joined, strlen(joined) + 1);
    }
    return 0;
}

int cuvae_config_load_file(cuvae_config *c, const char *path, cuvae_status *st)
{
    enum { MAX_BYTES = 1 << 20 };
    FILE *f = cuvae_open_input(path, st);
    if (!f) return -1;
    char *buf = malloc(MAX_BYTES + 1);
    if (!buf) {
        fclose(f);
        return cuvae_fail(st, "%s: out of memory reading the config", path);
    }
    size_t n = fread(buf, 1, MAX_BYTES + 1, f);
    int read_err = ferror(f);
    fclose(f);
    if (read_err || n > MAX_BYTES) {
        free(buf);
        return read_err
                   ? cuvae_fail(st, "%s: read error", path)
                   : cuvae_fail(st, "%s: larger than %d bytes: not a config file", path, MAX_BYTES);
    }
    cuvae_config *work = malloc(sizeof *work);
    if (!work) {
        free(buf);
        return cuvae_fail(st, "%s: out of memory reading the config", path);
    }
    memcpy(work, c, sizeof *work);
    int dir_set = 0;
    int rc = load_text(work, buf, n, path, &dir_set, st);
    free(buf);
    if (!rc) rc = resolve_data_paths(work, path, st);
    if (!rc && (!dir_set || !work->output.dir[0])) {
        /* runs/<file name without .ini> */
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        size_t len = strlen(base);
        if (len > 4 && !strcmp(base + len - 4, ".ini")) len -= 4;
        if (len == 0 || len + 5 > CUVAE_PATH_LEN - 1)
            rc = cuvae_fail(st, "%s: cannot derive output.dir from this file name; set output.dir",
                            path);
        else
            snprintf(work->output.dir, CUVAE_PATH_LEN, "runs/%.*s", (int)len, base);
    }
    if (!rc) memcpy(c, work, sizeof *c);
    free(work);
    return rc;
}

int cuvae_config_override(cuvae_config *c, const char *assignment, cuvae_status *st)
{
    const char *eq = strchr(assignment, '=');
    const char *dot = eq ? memchr(assignment, '.', (size_t)(eq - assignment)) : NULL;
    if (!eq || !dot)
        return cuvae_fail(st, "command line: '%s': expected section.key=value", assignment);
    /* Refused before anything quotes it: a newline or a byte that is not UTF-8 would be echoed
     * raw into messages and could never be saved in a checkpoint's config text. */
    int control = 0;
    for (const char *p = assignment; *p; p++)
        control |= ((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f;
    int utf8 = cuvae_utf8_valid(assignment, strlen(assignment));
    if (control || !utf8) {
        char shown[512];
        cuvae_escape(assignment, shown, sizeof shown);
        return cuvae_fail(st, "command line: '%s': %s", shown,
                          utf8 ? "holds a control character (a newline, say)"
                               : "is not valid UTF-8");
    }
    char section[64], key[64], value[1024];
    const char *s = assignment, *se = dot, *k = dot + 1, *ke = eq, *v = eq + 1;
    while (is_space(*s)) s++;
    while (ke > k && is_space(ke[-1])) ke--;
    while (is_space(*v)) v++;
    size_t vlen = strlen(v);
    while (vlen && is_space(v[vlen - 1])) vlen--;
    if ((size_t)(se - s) >= sizeof section || (size_t)(ke - k) >= sizeof key ||
        vlen >= sizeof value || se == s || ke == k)
        return cuvae_fail(st, "command line: '%s': expected section.key=value", assignment);
    memcpy(section, s, (size_t)(se - s));
    section[se - s] = '\0';
    memcpy(key, k, (size_t)(ke - k));
    key[ke - k] = '\0';
    memcpy(value, v, vlen);
    value[vlen] = '\0';
    if (find_section(section) < 0) {
        char list[128];
        section_list(list, sizeof list);
        return cuvae_fail(st, "command line: unknown section '%s' in '%s' (sections: %s)", section,
                          assignment, list);
    }
    int ki = find_key(section, key);
    if (ki < 0) {
        char hint[160];
        suggest_key(section, key, hint, sizeof hint);
        return cuvae_fail(st, "command line: %s: unknown key '%s' in [%s]%s", assignment, key,
                          section, hint);
    }
    cuvae_config *work = malloc(sizeof *work);
    if (!work) return cuvae_fail(st, "command line: out of memory");
    memcpy(work, c, sizeof *work);
    char why[700];
    int rc = 0;
    const cuvae_key_spec *ks = &cuvae_config_keys[ki];
    if (set_value(ks, work, value, why, sizeof why))
        rc = cuvae_fail(st, "command line: %s.%s=%s: %s", section, key, value, why);
    else if (ks->type == CUVAE_KEY_LAYERS || ks->type == CUVAE_KEY_INT_LIST)
        rc = encoder_replaces_hidden(work, ks->type == CUVAE_KEY_LAYERS ? -1 : 0,
                                     ks->type == CUVAE_KEY_INT_LIST ? -1 : 0, "command line", st);
    if (!rc) memcpy(c, work, sizeof *c);
    free(work);
    return rc;
}

/* ---- cross-key checks --------------------------------------------------------------------- */

int cuvae_config_validate(const cuvae_config *c, cuvae_status *st)
{
    /* Every value against its own range first: a config built in code skips the parser. */
    cuvae_config *probe = malloc(sizeof *probe);
    if (!probe) return cuvae_fail(st, "config: out of memory");
    int rc = 0;
    for (size_t i = 0; i < N_KEYS && !rc; i++) {
        const cuvae_key_spec *k = &cuvae_config_keys[i];
        char text[2 * CUVAE_PATH_LEN], why[700];
        memcpy(probe, c, sizeof *probe);
        if (k->type == CUVAE_KEY_ENUM || k->type == CUVAE_KEY_BOOL) {
            int v = *(const int *)((const char *)c + k->offset);
            int n = 0;
            if (k->type == CUVAE_KEY_BOOL)
                n = 2;
            else
                while (k->names[n]) n++;
            if (v < 0 || v >= n)
                rc = cuvae_fail(st, "config: %s.%s: invalid value %d", k->section, k->key, v);
            continue;
        }
        if (k->type == CUVAE_KEY_INT_LIST) {
            int n = *(const int *)((const char *)c + k->offset2);
            if (n < 0 || n > CUVAE_MAX_HIDDEN) {
                rc = cuvae_fail(st, "config: %s.%s: %d entries, at most %d", k->section, k->key, n,
                                CUVAE_MAX_HIDDEN);
                continue;
            }
        }
        if (k->type == CUVAE_KEY_LAYERS) {
            const cuvae_stack_spec *sp = (const void *)((const char *)c + k->offset);
            if (sp->n < 0 || sp->n > CUVAE_MAX_SPEC) {
                rc = cuvae_fail(st, "config: %s.%s: %d layers, at most %d", k->section, k->key,
                                sp->n, CUVAE_MAX_SPEC);
                continue;
            }
        }
        if (k->type == CUVAE_KEY_STRING &&
            !memchr((const char *)c + k->offset, '\0', CUVAE_PATH_LEN)) {
            rc = cuvae_fail(st, "config: %s.%s: not terminated", k->section, k->key);
            continue;
        }
        cuvae_key_format(k, c, text, sizeof text);
        if (set_value(k, probe, text, why, sizeof why))
            rc = cuvae_fail(st, "config: %s.%s: %s", k->section, k->key, why);
    }
    free(probe);
    if (rc) return rc;

    if (c->model.encoder.n > 0 && c->model.n_hidden > 0)
        return cuvae_fail(st, "config: model.hidden and model.encoder both describe the encoder; "
                              "give one (model.hidden is the MLP shorthand)");
    if (c->model.decoder.n > 0 && c->model.encoder.n == 0)
        return cuvae_fail(st,
                          "config: model.decoder is given without model.encoder (model.hidden's "
                          "decoder is always its mirror)");
    if (c->model.likelihood == CUVAE_LIK_GAUSSIAN && c->data.binarize != CUVAE_BIN_NONE)
        return cuvae_fail(st,
                          "config: model.likelihood=gaussian needs data.binarize=none (got %s): "
                          "a Gaussian models grey levels, binarized pixels call for bernoulli",
                          c->data.binarize == CUVAE_BIN_STATIC ? "static" : "dynamic");
    if (!c->data.train_images[0] || !c->data.test_images[0])
        return cuvae_fail(
            st, "config: data.%s is empty: expected the path of an image file (IDX, .npy or .npz)",
            c->data.train_images[0] ? "test_images" : "train_images");
    if (c->optim.min_lr > c->optim.lr)
        return cuvae_fail(st, "config: optim.min_lr (%g) is above optim.lr (%g)",
                          (double)c->optim.min_lr, (double)c->optim.lr);
    if (c->data.limit_train > 0 && c->data.validation >= c->data.limit_train)
        return cuvae_fail(st,
                          "config: data.validation (%d) leaves no training examples out of "
                          "data.limit_train (%d)",
                          c->data.validation, c->data.limit_train);
    if (c->data.limit_train > 0) {
        /* The run's length is known only when the training set is limited; an upper bound on
         * the steps (partial last batch counted) keeps this from ever refusing a sane config. */
        long long per_epoch = (c->data.limit_train - c->data.validation + c->train.batch_size - 1) /
                              c->train.batch_size;
        long long total = per_epoch * c->train.epochs;
        if (c->optim.warmup_steps > total)
            return cuvae_fail(st,
                              "config: optim.warmup_steps (%d) is longer than the whole run "
                              "(at most %lld steps)",
                              c->optim.warmup_steps, total);
    }
    return 0;
}
