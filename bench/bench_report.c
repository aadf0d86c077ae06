/* `cuvae bench`'s report: the machine it ran on, the table and the JSON (see bench.h). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "blas_info.h"
#include "file_write.h"

/* ---- machine --------------------------------------------------------------------------------- */

void cuvae_bench_cpu_model(char *buf, size_t len)
{
    snprintf(buf, len, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) != 0) continue;
        const char *v = strchr(line, ':');
        if (!v) continue;
        v++;
        while (*v == ' ' || *v == '\t') v++;
        snprintf(buf, len, "%s", v);
        buf[strcspn(buf, "\n")] = '\0';
        break;
    }
    fclose(f);
}

/* The 1-minute load average (from /proc/loadavg; NAN when unreadable): a busy machine times
 * slower, and the JSON says how busy it was. */
static double load_average(void)
{
    double v = NAN;
    FILE *f = fopen("/proc/loadavg", "r");
    if (!f) return NAN;
    if (fscanf(f, "%lf", &v) != 1) v = NAN;
    fclose(f);
    return v;
}

double cuvae_bench_peak_rss_mib(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return NAN;
    return (double)ru.ru_maxrss / 1024.0; /* Linux reports KiB */
}

/* ---- output ---------------------------------------------------------------------------------- */

void cuvae_bench_model_text(const cuvae_config *c, int d, char *buf, size_t len)
{
    int at = snprintf(buf, len, "%d", d);
    for (int i = 0; i < c->model.n_hidden && at > 0 && (size_t)at < len; i++)
        at += snprintf(buf + at, len - (size_t)at, "-%d", c->model.hidden[i]);
    /* model.encoder: "784-conv32-conv64-256-32" */
    static const char *const kind[] = {"", "conv", "convt"};
    for (int i = 0; i < c->model.encoder.n && at > 0 && (size_t)at < len; i++) {
        const cuvae_layer_spec *l = &c->model.encoder.layer[i];
        int size = l->kind == 0 && l->h ? l->c * l->h * l->w : l->c;
        at += snprintf(buf + at, len - (size_t)at, "-%s%d",
                       kind[l->kind > 0 && l->kind < 3 ? l->kind : 0], size);
    }
    if (at > 0 && (size_t)at < len) snprintf(buf + at, len - (size_t)at, "-%d", c->model.latent);
}

void cuvae_bench_print_table(FILE *out, const setting *s, int n, int eval_K, int64_t eval_n,
                             cuvae_device device)
{
    fprintf(out, "%6s %-9s %9s %11s %9s %12s %9s  %s\n", "batch", "precision", "step ms",
            "samples/s", "GFLOP/s", "epoch 55k s", "peak MiB", "status");
    for (int i = 0; i < n; i++) {
        const setting *r = &s[i];
        if (r->status != SETTING_OK) {
            fprintf(out, "%6d %-9s %9s %11s %9s %12s %9s  %s: %s\n", r->batch,
                    cuvae_precision_name(r->precision), "-", "-", "-", "-", "-",
                    r->status == SETTING_SKIPPED ? "skipped" : "FAILED", r->reason);
            continue;
        }
        char mem[32];
        if (device == CUVAE_DEV_CPU)
            snprintf(mem, sizeof mem, "%.0f", r->peak_mib);
        else
            snprintf(mem, sizeof mem, "see below");
        fprintf(out, "%6d %-9s %9.3f %11.0f %9.1f %12.2f %9s  ok\n", r->batch,
                cuvae_precision_name(r->precision), r->step_s * 1e3, r->samples_per_s, r->gflops,
                r->epoch_s, mem);
    }
    int any_eval = 0;
    for (int i = 0; i < n; i++) any_eval |= s[i].has_eval;
    if (any_eval) {
        fprintf(out, "\nevaluation: K = %d importance samples, %lld examples a pass\n", eval_K,
                (long long)eval_n);
        fprintf(out, "%-9s %12s %10s %14s\n", "precision", "examples/s", "pass s", "-log p bound");
        for (int i = 0; i < n; i++)
            if (s[i].has_eval)
                fprintf(out, "%-9s %12.1f %10.3f %14.4f\n", cuvae_precision_name(s[i].precision),
                        s[i].eval_per_s, s[i].eval.seconds, s[i].eval.neg_iw);
    }
    if (device == CUVAE_DEV_CUDA) {
        for (int i = 0; i < n; i++)
            if (s[i].status == SETTING_OK)
                fprintf(out, "\nmemory (batch %d, %s): %s\n", s[i].batch,
                        cuvae_precision_name(s[i].precision), s[i].memory);
    }
}

void cuvae_bench_print_breakdown(FILE *out, const setting *s, int n)
{
    for (int i = 0; i < n; i++) {
        const setting *r = &s[i];
        if (r->status != SETTING_OK || !r->has_profile) continue;
        const cuvae_profile *p = &r->profile;
        double per = 1e3 / (double)p->steps, gemm = 0, gemm_flops = 0;
        fprintf(out, "\nstep breakdown, batch %d (%s), mean of %lld steps: %.3f ms a step\n",
                r->batch, cuvae_precision_name(r->precision), (long long)p->steps,
                p->seconds * per);
        fprintf(out, "  %-32s %9s %7s %9s\n", "phase", "ms", "share", "GFLOP/s");
        for (int k = 0; k < p->n; k++) {
            const cuvae_profile_entry *e = &p->e[k];
            char rate[32] = "";
            if (e->flops > 0 && e->seconds > 0) {
                snprintf(rate, sizeof rate, "%9.1f", e->flops / e->seconds * 1e-9);
                gemm += e->seconds;
                gemm_flops += e->flops;
            }
            fprintf(out, "  %-32s %9.3f %6.1f%% %9s\n", e->name, e->seconds * per,
                    100.0 * e->seconds / p->seconds, rate);
        }
        fprintf(out, "  %-32s %9.3f %6.1f%% %9.1f\n", "all GEMMs", gemm * per,
                100.0 * gemm / p->seconds, gemm > 0 ? gemm_flops / gemm * 1e-9 : 0.0);
        fprintf(out, "  %-32s %9.3f %6.1f%%\n", "everything else", (p->seconds - gemm) * per,
                100.0 * (p->seconds - gemm) / p->seconds);
    }
}

static json_t *breakdown_json(const cuvae_profile *p)
{
    json_t *arr = json_array();
    for (int k = 0; k < p->n; k++) {
        const cuvae_profile_entry *e = &p->e[k];
        json_t *j = json_object();
        json_object_set_new(j, "phase", json_string(e->name));
        json_object_set_new(j, "ms_per_step", json_real(e->seconds * 1e3 / (double)p->steps));
        json_object_set_new(j, "share", json_real(e->seconds / p->seconds));
        if (e->flops > 0 && e->seconds > 0)
            json_object_set_new(j, "gflop_per_s", json_real(e->flops / e->seconds * 1e-9));
        json_array_append_new(arr, j);
    }
    return arr;
}

int cuvae_bench_write_json(const char *path, const bench_opts *o, int argc, char **argv,
                           const char *machine, const char *cpu, const char *device_name,
                           const cuvae_config *c, const char *model, const bench_data *bd,
                           const setting *s, int n, int eval_K, cuvae_status *st)
{
    json_t *root = json_object();
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tm);
    char cmdline[4096];
    int at = snprintf(cmdline, sizeof cmdline, "cuvae");
    for (int i = 0; i < argc && at > 0 && (size_t)at < sizeof cmdline; i++)
        at += snprintf(cmdline + at, sizeof cmdline - (size_t)at, " %s", argv[i]);
    json_t *mach = json_object();
    json_object_set_new(mach, "name", json_string(machine));
    json_object_set_new(mach, "cpu", json_string(cpu));
    json_object_set_new(mach, "cpus_online", json_integer(sysconf(_SC_NPROCESSORS_ONLN)));
    const char *threads = getenv("OPENBLAS_NUM_THREADS");
    json_object_set_new(mach, "openblas_num_threads", threads ? json_string(threads) : json_null());
    json_object_set_new(mach, "device", json_string(device_name));
    cuvae_blas_info bi;
    cuvae_blas_get_info(&bi);
    json_t *blas = json_object();
    json_object_set_new(blas, "library", json_string(bi.library));
    json_object_set_new(blas, "version", json_string(bi.version));
    json_object_set_new(blas, "config", json_string(bi.config));
    json_object_set_new(blas, "kernels", json_string(bi.kernels));
    json_object_set_new(blas, "kernels_source", json_string(bi.source));
    json_object_set_new(blas, "cpu_level", json_string(bi.cpu_level));
    json_object_set_new(blas, "threads", json_integer(bi.threads));
    json_object_set_new(mach, "blas", blas);
    double load = load_average();
    json_object_set_new(mach, "load_average", isfinite(load) ? json_real(load) : json_null());
    json_object_set_new(root, "tool", json_string("cuvae bench"));
    json_object_set_new(root, "version", json_string(CUVAE_VERSION));
    json_object_set_new(root, "machine", mach);
    json_object_set_new(root, "date", json_string(date));
    json_object_set_new(root, "command", json_string(cmdline));
    json_object_set_new(root, "config",
                        json_string(o->config_path ? o->config_path : "(defaults)"));
    json_object_set_new(root, "model", json_string(model));
    json_object_set_new(
        root, "likelihood",
        json_string(c->model.likelihood == CUVAE_LIK_BERNOULLI ? "bernoulli" : "gaussian"));
    json_object_set_new(root, "data", json_string(bd->synthetic ? "synthetic" : "config"));
    json_object_set_new(root, "train_examples", json_integer(bd->n_train));
    json_object_set_new(root, "steps", json_integer(o->steps));
    json_object_set_new(root, "warmup", json_integer(o->warmup));
    json_object_set_new(root, "repeats", json_integer(o->repeats));
    json_object_set_new(root, "epoch_examples", json_integer(EPOCH_EXAMPLES));
    json_object_set_new(root, "eval_samples", json_integer(eval_K));
    json_object_set_new(root, "eval_examples", json_integer(bd->n_test));
    json_t *arr = json_array();
    for (int i = 0; i < n; i++) {
        const setting *r = &s[i];
        json_t *e = json_object();
        json_object_set_new(e, "batch", json_integer(r->batch));
        json_object_set_new(e, "precision", json_string(cuvae_precision_name(r->precision)));
        json_object_set_new(e, "status",
                            json_string(r->status == SETTING_OK        ? "ok"
                                        : r->status == SETTING_SKIPPED ? "skipped"
                                                                       : "failed"));
        if (r->status != SETTING_OK) {
            json_object_set_new(e, "reason", json_string(r->reason));
            json_array_append_new(arr, e);
            continue;
        }
        json_object_set_new(e, "first_loss", json_real(r->first_loss));
        json_object_set_new(e, "step_ms", json_real(r->step_s * 1e3));
        json_object_set_new(e, "samples_per_s", json_real(r->samples_per_s));
        json_object_set_new(e, "gflop_per_s", json_real(r->gflops));
        json_object_set_new(e, "epoch_s_55000", json_real(r->epoch_s));
        json_t *reps = json_array();
        for (int k = 0; k < o->repeats; k++)
            json_array_append_new(reps, json_real(r->repeat_s[k] * 1e3 / o->steps));
        json_object_set_new(e, "repeat_step_ms", reps);
        if (isfinite(r->peak_mib)) json_object_set_new(e, "peak_rss_mib", json_real(r->peak_mib));
        json_object_set_new(e, "memory", json_string(r->memory));
        if (r->has_profile) json_object_set_new(e, "breakdown", breakdown_json(&r->profile));
        if (r->has_eval) {
            json_t *ev = json_object();
            json_object_set_new(ev, "samples", json_integer(eval_K));
            json_object_set_new(ev, "examples", json_integer(r->eval.n));
            json_object_set_new(ev, "pass_s", json_real(r->eval.seconds));
            json_object_set_new(ev, "examples_per_s", json_real(r->eval_per_s));
            json_object_set_new(ev, "neg_iw_bound", json_real(r->eval.neg_iw));
            json_object_set_new(ev, "neg_elbo", json_real(r->eval.neg_elbo));
            json_object_set_new(e, "eval", ev);
        }
        json_array_append_new(arr, e);
    }
    json_object_set_new(root, "settings", arr);
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(9));
    json_decref(root);
    if (!text) return cuvae_fail(st, "--json %s: out of memory formatting the report", path);
    /* The one writer (file_write.h): atomic replace of a regular file, a symlink kept. */
    int rc = cuvae_write_file(path, text, strlen(text), st);
    free(text);
    return rc ? cuvae_fail_prefix(st, "--json") : 0;
}
