/* Where the CPU backend's training step spends its time: the step marks the end of each phase
 * (cuvae_cpu_prof_mark) and `cuvae bench` reads the totals through the backend's profile entry,
 * one row per phase and two per layer of the layer table: "enc.0 fwd 512x784" (its GEMM with the
 * bias and ReLU passes) and "enc.0 bwd" (dW and dX with the bias gradient and the ReLU mask). */
#include <stdio.h>
#include <string.h>

#include "cpu_backend_impl.h"

void cuvae_cpu_prof_start(cpu_prof *p)
{
    p->start = p->last = cuvae_now();
}

void cuvae_cpu_prof_mark(cpu_prof *p, int slot, double flops)
{
    double t = cuvae_now();
    p->seconds[slot] += t - p->last;
    p->flops[slot] += flops;
    p->calls[slot]++;
    p->last = t;
}

void cuvae_cpu_prof_end(cpu_prof *p)
{
    p->step_seconds += p->last - p->start;
    p->steps++;
}

static const char *const PHASE_NAMES[CPU_PH_GEMM] = {
    [CPU_PH_GATHER] = "gather + binarize",
    [CPU_PH_NOISE] = "normal noise",
    [CPU_PH_REPARAM_KL] = "reparam + KL",
    [CPU_PH_LIKELIHOOD] = "likelihood + gradient",
    [CPU_PH_LOSS] = "loss sums",
    [CPU_PH_REPARAM_KL_BWD] = "reparam + KL (backward)",
    [CPU_PH_ADAM] = "Adam",
};

int cuvae_cpu_profile(cuvae_backend *be, cuvae_profile *out, int reset, cuvae_status *st)
{
    (void)st;
    cpu_backend *cb = (cpu_backend *)be;
    cpu_prof *p = &cb->prof;
    memset(out, 0, sizeof *out);
    out->steps = p->steps;
    out->seconds = p->step_seconds;
    /* GEMMs first, in the order the step runs them, then the other phases. */
    static const char *const KIND[CPU_GEMM_KINDS] = {"fwd", "bwd"};
    for (int half = 0; half < 2; half++) {
        const cuvae_stack *s = cuvae_model_stack(&cb->m, half);
        int n = s->n;
        for (int kind = 0; kind < CPU_GEMM_KINDS; kind++)
            for (int l = 0; l < n; l++) {
                int i = kind == CPU_GEMM_FWD ? l : n - 1 - l;
                int slot = cpu_gemm_slot(half, i, kind);
                if (!p->calls[slot] || out->n == CUVAE_PROFILE_MAX) continue;
                cuvae_profile_entry *e = &out->e[out->n++];
                const cuvae_layer *lin = &s->layer[i];
                if (lin->kind == CUVAE_LAYER_LINEAR)
                    snprintf(e->name, sizeof e->name, "%s.%d %s %dx%d", half ? "dec" : "enc", i,
                             KIND[kind], lin->out, lin->in);
                else /* the output shape and the kernel: "enc.0 fwd conv 32x14x14 k4" */
                    snprintf(e->name, sizeof e->name, "%s.%d %s %s %dx%dx%d k%d",
                             half ? "dec" : "enc", i, KIND[kind],
                             lin->kind == CUVAE_LAYER_CONV2D ? "conv" : "convt", lin->out_shape.c,
                             lin->out_shape.h, lin->out_shape.w, lin->kernel);
                e->seconds = p->seconds[slot];
                e->flops = p->flops[slot];
                e->calls = p->calls[slot];
            }
    }
    for (int slot = 0; slot < CPU_PH_GEMM; slot++) {
        if (!p->calls[slot] || out->n == CUVAE_PROFILE_MAX) continue;
        cuvae_profile_entry *e = &out->e[out->n++];
        snprintf(e->name, sizeof e->name, "%s", PHASE_NAMES[slot]);
        e->seconds = p->seconds[slot];
        e->calls = p->calls[slot];
    }
    if (reset) memset(p, 0, sizeof *p);
    return 0;
}
