/* Backward pass of the fused plastic-cell CPU kernel (the forward and the design: forward.c). */
#include "cells.h"

ALWAYS_INLINE void backward_sequence(const config *c, const int N, int b, const bwd_io *io, real *segF, real *segE,
                                     const bwd_vecs *v, real *zeros, real *grad) {
    const int T = c->T, B = c->B, K = c->K;
    const size_t S = c->S;
    const seqs s = {io->xp, io->h0, io->c0, io->H, io->AUX, io->starts, zeros};
    real *dh = io->dh ? io->dh + (size_t)b * N : NULL, *dc = io->dc ? io->dc + (size_t)b * N : NULL;
    real *dF = io->dF + b * S, *dE = io->dE ? io->dE + b * S : NULL;
    for (int seg = (T - 1) / K; seg >= 0; seg--) {
        const int t0 = seg * K, t1 = t0 + K < T ? t0 + K : T;
        /* replay the segment forward from its checkpoint, writing the traces entering each step into its slot */
        for (int t = t0; t < t1; t++) {
            real *Fs = segF + (size_t)(t - t0) * S, *Es = segE ? segE + (size_t)(t - t0) * S : NULL;
            if (is_start(c, &s, t, b)) {
                reset_traces(c, Fs, Es);
            } else if (t == t0) {
                memcpy(Fs, io->F_ck + ((size_t)seg * B + b) * S, S * sizeof(real));
                if (Es) memcpy(Es, io->E_ck + ((size_t)seg * B + b) * S, S * sizeof(real));
            } else {
                const size_t tp = (size_t)(t - 1) * B + b; /* the previous step */
                fan_out(c, N, c->mod != M_NONE ? io->MS[tp] : 0, v->m);
                int NI = c->cell == C_MLP ? c->X : N;
                for (int l = 0; l < c->n_layers; l++) {
                    const layer *L = c->layers + l;
                    trace_update_to(c, L, NI, N, pre_of(c, N, &s, l, t - 1, b), post_of(c, N, &s, l, t - 1, b), v->m,
                                    Fs - S + L->f_off, Es ? Es - S + L->f_off : NULL, Fs + L->f_off,
                                    Es ? Es + L->f_off : NULL);
                    if (L->max_norm) normalize_max((size_t)L->n_pre * L->n_post, Fs + L->f_off, Fs + L->f_off);
                    NI = N;
                }
            }
        }
        for (int t = t1 - 1; t >= t0; t--) {
            const real *Fb = segF + (size_t)(t - t0) * S, *Eb = segE ? segE + (size_t)(t - t0) * S : NULL;
            cell_backward(c, N, &s, io, t, b, Fb, Eb, dh, dc, dF, dE, grad, v);
        }
    }
}

typedef struct {
    const config *c;
    const bwd_io *io;
    volatile int failed;
} bwd_job;

static void backward_chunk(void *ctx, int begin, int end, int tid) {
    bwd_job *job = ctx;
    const config *c = job->c;
    const int N = c->N, K = c->K, elig = job->io->dE != NULL;
    const size_t S = c->S, wide = (size_t)(c->X > N ? c->X : N) + (size_t)c->n_layers * N;
    real *vecs = calloc(6 * (size_t)N + 2 * wide, sizeof(real));
    real *segF = malloc((size_t)K * S * sizeof(real)), *segE = elig ? malloc((size_t)K * S * sizeof(real)) : NULL;
    if (!vecs || !segF || (elig && !segE)) {
        job->failed = 1;
        begin = end; /* skip the work, free what was allocated */
    }
    const bwd_vecs v = {vecs, vecs + N, vecs + 2 * N, vecs + 3 * N, vecs + 4 * N, vecs + 6 * N};
    real *zeros = vecs + 6 * N + wide;
    real *grad = job->io->grad + (size_t)tid * c->G;
    for (int b = begin; b < end; b++) {
#define BWD(n) backward_sequence(c, n, b, job->io, segF, segE, &v, zeros, grad)
        DISPATCH_N(N, BWD)
#undef BWD
    }
    free(segF);
    free(segE);
    free(vecs);
}

int plastic_backward(const config *c, const bwd_io *io) {
    bwd_job job = {c, io, 0};
    parallel_for(c->B, c->nthreads, backward_chunk, (void *)&job);
    return job.failed;
}
