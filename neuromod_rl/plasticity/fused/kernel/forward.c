/*
 * CPU kernel of the fused plastic scan, forward pass (the Python side: fused/cpu.py; the backward is in
 * backward.c, the interface in fused_kernel.h, one layer's rules in rules.h, one step of each cell in
 * cells.h).
 *
 * One sequence per thread at a time: its fast-weight tiles stay in L1/L2 for all T steps, so a step
 * costs a pass or two over cache-resident memory instead of a dozen passes over B x N x N tensors in
 * DRAM; each trace update is applied in the next step's drive pass, so a step reads each trace row
 * once. Threads are plain pthreads forked and joined per call (an OpenMP runtime would leave spinning
 * workers behind that fight torch's own pool; ``#pragma omp simd`` only asks for vectorisation,
 * -fopenmp-simd). Compiled twice, with -DREAL=float and -DREAL=double, and with -ffp-contract=off so
 * that the backward replay reproduces the forward's rounding exactly (the clip masks must agree).
 */
#include "cells.h"

/* Apply step tp's trace update to every layer, in place (at a checkpoint and after the last step only). */
ALWAYS_INLINE void apply_pending(const config *c, const int N, const seqs *s, int tp, int b, const real *pm, real *F,
                                 real *E, real *scratch) {
    int NI = c->cell == C_MLP ? c->X : N;
    for (int l = 0; l < c->n_layers; l++) {
        const layer *L = c->layers + l;
        const size_t n = (size_t)L->n_pre * L->n_post;
        real *Fl = F + L->f_off, *El = E ? E + L->f_off : NULL;
        trace_update_to(c, L, NI, N, pre_of(c, N, s, l, tp, b), post_of(c, N, s, l, tp, b), pm, Fl, El, scratch,
                        El ? scratch + n : NULL);
        if (L->max_norm) normalize_max(n, scratch, Fl);
        else memcpy(Fl, scratch, n * sizeof(real));
        if (El) memcpy(El, scratch + n, n * sizeof(real));
        NI = N;
    }
}

ALWAYS_INLINE void forward_sequence(const config *c, const int N, int b, const fwd_io *io, real *buf,
                                    real *scratch) {
    const int T = c->T, B = c->B, K = c->K;
    const size_t S = c->S;
    const seqs s = {io->xp, io->h0, io->c0, io->H, io->AUX, io->starts, buf};
    /* this step's modulation and the pending previous step's */
    real *a = buf + (c->X > N ? c->X : N), *m = a + 4 * N, *pm = m + N;
    real *Fb = io->F + b * S, *Eb = io->E ? io->E + b * S : NULL;
    const int defer = !any_max_norm(c); /* apply each update in the next step's pass, where possible */
    int pending = 0;
    for (int t = 0; t < T; t++) {
        const size_t tb = (size_t)t * B + b;
        if (is_start(c, &s, t, b)) { /* the traces restart: the pending update is moot */
            reset_traces(c, Fb, Eb);
            pending = 0;
        }
        if (t % K == 0) {
            if (pending) apply_pending(c, N, &s, t - 1, b, pm, Fb, Eb, scratch);
            pending = 0;
            if (io->F_ck) memcpy(io->F_ck + ((size_t)(t / K) * B + b) * S, Fb, S * sizeof(real));
            if (Eb && io->E_ck) memcpy(io->E_ck + ((size_t)(t / K) * B + b) * S, Eb, S * sizeof(real));
        }
        const real ms = cell_forward(c, N, &s, io, t, b, Fb, Eb, a, m, pending, pm);
        if (io->MS) io->MS[tb] = ms;
        if (io->MF) memcpy(io->MF + tb * N, m, N * sizeof(real));
        real *swap = pm;
        pm = m;
        m = swap;
        pending = 1;
        if (!defer) {
            apply_pending(c, N, &s, t, b, pm, Fb, Eb, scratch);
            pending = 0;
        }
    }
    if (pending) apply_pending(c, N, &s, T - 1, b, pm, Fb, Eb, scratch);
}

typedef struct {
    const config *c;
    const fwd_io *io;
    volatile int failed; /* set by a thread whose scratch allocation failed */
} fwd_job;

static void forward_chunk(void *ctx, int begin, int end, int tid) {
    (void)tid;
    fwd_job *job = ctx;
    const config *c = job->c;
    const int N = c->N, wide = c->X > N ? c->X : N;
    real *buf = calloc((size_t)wide + 6 * (size_t)N, sizeof(real)); /* zeros, a, m, pm */
    real *scratch = malloc(2 * (size_t)c->S * sizeof(real));
    if (!buf || !scratch) {
        job->failed = 1;
        begin = end; /* skip the work, free what was allocated */
    }
    for (int b = begin; b < end; b++) {
#define FWD(n) forward_sequence(c, n, b, job->io, buf, scratch)
        DISPATCH_N(N, FWD)
#undef FWD
    }
    free(buf);
    free(scratch);
}

int plastic_forward(const config *c, const fwd_io *io) {
    fwd_job job = {c, io, 0};
    parallel_for(c->B, c->nthreads, forward_chunk, (void *)&job);
    return job.failed;
}
