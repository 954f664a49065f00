/*
 * CPU kernel of the fused plastic-RNN scan, forward pass (the Python side: fused/cpu.py; the
 * backward is in backward.c, the interface and the shared step pieces in fused_kernel.h).
 *
 * One sequence per thread at a time: its fast-weight tile F[b] (N x N) stays in L1/L2 for all T
 * steps, so a step costs a pass or two over cache-resident memory instead of a dozen passes over
 * B x N x N tensors in DRAM. Threads are plain pthreads forked and joined per call (an OpenMP
 * runtime would leave spinning workers behind that fight torch's own pool; ``#pragma omp simd``
 * only asks for vectorisation, -fopenmp-simd). Compiled twice, with -DREAL=float and -DREAL=double.
 *
 * Layouts (row-major, contiguous): xp, H [T,B,N]; starts [T,B] (uint8); F, E [B,N,N] with F[b,i,j],
 * i presynaptic, j postsynaptic; w, alpha_full [N,N]; alpha_vec [N] (per postsynaptic neuron).
 * Built with -ffp-contract=off so that the backward replay reproduces the forward's rounding
 * exactly (the clip masks must agree).
 */
#include "fused_kernel.h"

static inline __attribute__((always_inline)) void forward_sequence(const config *c, const int N, int b,
                                                                   const fwd_io *io, real *buf, real *scratch) {
    const int T = c->T, B = c->B, K = c->K;
    const size_t NN = (size_t)N * N;
    /* two sets of (pre, modulation) buffers: this step's and the pending previous step's */
    real *hp = buf, *a = buf + N, *m = buf + 2 * N, *php = buf + 3 * N, *pm = buf + 4 * N;
    const real *ph = NULL;  /* h of the step whose trace update is pending (a row of H) */
    real *Fb = io->F + b * NN, *Eb = io->E ? io->E + b * NN : NULL;
    int pending = 0;
    for (int t = 0; t < T; t++) {
        const size_t tb = (size_t)t * B + b;
        const int reset = io->starts && io->starts[tb];
        if (reset) { /* the trace restarts at zero: the pending update is moot */
            memset(Fb, 0, NN * sizeof(real));
            if (Eb) memset(Eb, 0, NN * sizeof(real));
            pending = 0;
        }
        if (t % K == 0) {
            if (pending) apply_pending(c, N, php, ph, pm, Fb, Eb, scratch);
            pending = 0;
            memcpy(io->F_ck + ((size_t)(t / K) * B + b) * NN, Fb, NN * sizeof(real));
            if (Eb) memcpy(io->E_ck + ((size_t)(t / K) * B + b) * NN, Eb, NN * sizeof(real));
        }
        pre_activity(c, N, t, b, io->h0, io->H, io->starts, hp);
        real *h = io->H + tb * N;
        const real xt = io->ext ? io->ext[tb] : 0;
        const real ms = pending ? step_forward_pending(c, N, io->xp + tb * N, xt, hp, Fb, Eb, a, h, m, php, ph, pm)
                                : step_forward(c, N, io->xp + tb * N, xt, hp, Fb, a, h, m);
        if (io->MS) io->MS[tb] = ms;
        if (io->MF) memcpy(io->MF + tb * N, m, N * sizeof(real));
        real *swap = php; php = hp; hp = swap;
        swap = pm; pm = m; m = swap;
        ph = h;
        pending = 1;
    }
    if (pending) apply_pending(c, N, php, ph, pm, Fb, Eb, scratch);
}

typedef struct {
    const config *c;
    const fwd_io *io;
    volatile int failed; /* set by a thread whose scratch allocation failed */
} fwd_job;

static void forward_chunk(void *ctx, int begin, int end, int tid) {
    (void)tid;
    fwd_job *job = ctx;
    const int N = job->c->N;
    real *buf = malloc(5 * (size_t)N * sizeof(real));
    real *scratch = malloc(2 * (size_t)N * N * sizeof(real));
    if (!buf || !scratch) {
        job->failed = 1;
        begin = end; /* skip the work, free what was allocated */
    }
    for (int b = begin; b < end; b++) {
#define FWD(n) forward_sequence(job->c, n, b, job->io, buf, scratch)
        DISPATCH_N(N, FWD)
#undef FWD
    }
    free(buf);
    free(scratch);
}

int plastic_rnn_forward(const config *c, const fwd_io *io) {
    fwd_job job = {c, io, 0};
    parallel_for(c->B, c->nthreads, forward_chunk, (void *)&job);
    return job.failed;
}

