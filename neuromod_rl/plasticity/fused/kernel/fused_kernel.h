/*
 * Shared pieces of the fused plastic-RNN CPU kernel (forward.c, backward.c; the Python side is
 * neuromod_rl/plasticity/fused/cpu.py). The interface structs below are the one declaration of the
 * C interface; cpu.py mirrors them field by field as ctypes Structures. Everything else here is
 * static inline: each file gets its own copy, specialised by the compiler.
 */
#ifndef NEUROMOD_RL_FUSED_KERNEL_H
#define NEUROMOD_RL_FUSED_KERNEL_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

typedef REAL real;

/* Rule and modulation codes come from the one table in fused/spec.py, as -D flags. */
#if !defined(R_NEUROMOD) || !defined(R_CLIPPED) || !defined(R_HEBBIAN) || !defined(R_RETRO) || !defined(M_NONE) || \
    !defined(M_SCALAR) || !defined(M_FANOUT)
#error "compile with the rule and modulation codes of neuromod_rl/plasticity/fused/spec.py (kernel_defines())"
#endif

/* -- the C interface (mirrored by cpu.py) -------------------------------------------------------- */
typedef struct {
    int T, B, N, rule, alpha_full, mod, external, K, nthreads;
    real clip, eta, bm;
    const real *w, *alpha, *wm, *wf, *bf;
} config;

/* Forward. In: xp [T,B,N], starts [T,B] (or NULL), ext [T,B] (or NULL), h0 [B,N]; in/out: F, E [B,N,N]
 * (E NULL unless the eligibility rule); out: H [T,B,N], MS [T,B], MF [T,B,N], F_ck/E_ck [ceil(T/K),B,N,N]. */
typedef struct {
    const real *xp, *ext, *h0;
    const uint8_t *starts;
    real *F, *E, *H, *MS, *MF, *F_ck, *E_ck;
} fwd_io;

/* Backward. In: gH [T,B,N] (or NULL), dh [B,N] = dL/dh_T, dF/dE [B,N,N] = dL/dF_T, dL/dE_T.
 * Out (in place): dh = dL/dh0, dF = dL/dF0, dE = dL/dE0; gxp [T,B,N] = dL/d(pre-activation);
 * gms [T,B] = dL/dM(t) (external) or dL/dz (learned head, z the pre-tanh of M); gmf [T,B,N] = dL/dm
 * (fan-out); galpha [nthreads, N*N or N] and geta [B] partial sums, reduced by the caller. */
typedef struct {
    const uint8_t *starts;
    const real *h0, *H, *MS, *F_ck, *E_ck, *gH;
    real *dh, *dF, *dE, *gxp, *gms, *gmf, *galpha, *geta;
} bwd_io;

/* Both return 0, or 1 when scratch memory could not be allocated (the outputs are then incomplete). */
int plastic_rnn_forward(const config *c, const fwd_io *io);
int plastic_rnn_backward(const config *c, const bwd_io *io);

static inline real clampr(real x, real c) { return x < -c ? -c : (x > c ? c : x); }

#ifdef FAST_TANH
/* tanh without libm calls, so the loop over neurons vectorises: with a = exp(2x) - 1,
 * tanh x = a / (a + 2). a comes from a degree-8 Taylor series of exp(2x/32) - 1 and five
 * squarings, each (1 + a)^2 - 1 = a (2 + a), which never subtracts nearby numbers.
 * Max abs error 3e-7 over all floats (|x| > 9 saturates). */
static inline real tanhr(real x) {
    x = x < -9 ? -9 : (x > 9 ? 9 : x);
    const real y = x * (real)(2.0 / 32.0);
    real p = (real)(1.0 / 40320);
    p = p * y + (real)(1.0 / 5040);
    p = p * y + (real)(1.0 / 720);
    p = p * y + (real)(1.0 / 120);
    p = p * y + (real)(1.0 / 24);
    p = p * y + (real)(1.0 / 6);
    p = p * y + (real)(1.0 / 2);
    p = p * y + 1;
    real a = p * y;
    for (int k = 0; k < 5; k++) a = a * (2 + a);
    return a / (a + 2);
}
#else
static inline real tanhr(real x) { return TANH(x); }
#endif

/* Presynaptic activity entering step t of sequence b (zero at an episode start). */
static inline __attribute__((always_inline)) void pre_activity(const config *c, const int N, int t, int b, const real *h0, const real *H, const uint8_t *starts,
                         real *hp) {
    if (starts && starts[(size_t)t * c->B + b]) {
        memset(hp, 0, N * sizeof(real));
        return;
    }
    memcpy(hp, t == 0 ? h0 + (size_t)b * N : H + ((size_t)(t - 1) * c->B + b) * N, N * sizeof(real));
}

/* The effective modulation m[j] of postsynaptic neuron j from the scalar M(t). */
static inline __attribute__((always_inline)) void fan_out(const config *c, const int N, real ms, real *m) {
    for (int j = 0; j < N; j++) m[j] = c->mod == M_FANOUT ? ms * c->wf[j] + c->bf[j] : ms;
}

/* Pre-clip values of F[i][j], written once so that the update and the backward clip mask round
 * identically: u = hp[i] * M(t) (neuromod, scalar), hp[i] * eta (clipped, hebbian, retroactive's E). */
#define P_SCALED(F, u, hj) ((F) + (u) * (hj))
#define P_FANOUT(F, hi, mj, hj) ((F) + (hi) * ((mj) * (hj)))
#define P_RETRO(F, E, mj) ((F) + (E) * (mj))
#define P_HEBB(F, keep, u, hj) ((F) * (keep) + (u) * (hj))

/* h = tanh(a), then M(t) from the head (or the caller) and its fan-out. */
static inline __attribute__((always_inline)) real finish_step(const config *c, const int N, real ext_t,
                                                              const real *restrict a, real *restrict h,
                                                              real *restrict m) {
#pragma omp simd
    for (int j = 0; j < N; j++) h[j] = tanhr(a[j]);
    real ms = 0;
    if (c->mod != M_NONE) {
        if (c->external) {
            ms = ext_t;
        } else {
            real z = c->bm;
            const real *restrict wm = c->wm;
#pragma omp simd reduction(+ : z)
            for (int j = 0; j < N; j++) z += h[j] * wm[j];
            ms = tanhr(z);
        }
    }
    fan_out(c, N, ms, m);
    return ms;
}

static inline __attribute__((always_inline)) real step_forward(const config *c, const int N, const real *restrict xp_t, real ext_t, const real *restrict hp,
                         const real *restrict F, real *restrict a, real *restrict h, real *restrict m) {
    memcpy(a, xp_t, N * sizeof(real));
    for (int i = 0; i < N; i++) {
        const real hi = hp[i];
        const real *restrict wi = c->w + (size_t)i * N, *restrict Fi = F + (size_t)i * N;
        const real *restrict ai = c->alpha_full ? c->alpha + (size_t)i * N : c->alpha;
        for (int j = 0; j < N; j++) a[j] += hi * (wi[j] + ai[j] * Fi[j]);
    }
    return finish_step(c, N, ext_t, a, h, m);
}

/* The trace update of one step, out of place: Fout = update(Fin) (equations:
 * neuromod_rl/plasticity/rules). The backward replay writes each step's trace straight into its slot;
 * the forward applies it in place through a scratch copy (see apply_pending). */
static inline __attribute__((always_inline)) void trace_update_to(const config *c, const int N,
                                                                  const real *restrict hp, const real *restrict h,
                                                                  const real *restrict m, const real *restrict Fin,
                                                                  const real *restrict Ein, real *restrict Fout,
                                                                  real *restrict Eout) {
    const int rule = c->rule, fan = c->mod == M_FANOUT;
    const real clip = c->clip, eta = c->eta, keep = 1 - c->eta;
    for (int i = 0; i < N; i++) {
        const real *restrict Fi = Fin + (size_t)i * N;
        real *restrict Fo = Fout + (size_t)i * N;
        const real hi = hp[i];
        if (rule == R_HEBBIAN) {
            const real u = hi * eta;
            for (int j = 0; j < N; j++) Fo[j] = P_HEBB(Fi[j], keep, u, h[j]);
        } else if (rule == R_RETRO) {
            const real *restrict Ei = Ein + (size_t)i * N;
            real *restrict Eo = Eout + (size_t)i * N;
            const real u = hi * eta;
            for (int j = 0; j < N; j++) {
                Fo[j] = clampr(P_RETRO(Fi[j], Ei[j], m[j]), clip);
                Eo[j] = Ei[j] * keep + u * h[j];
            }
        } else if (rule == R_NEUROMOD && fan) {
            for (int j = 0; j < N; j++) Fo[j] = clampr(P_FANOUT(Fi[j], hi, m[j], h[j]), clip);
        } else {
            const real u = hi * (rule == R_NEUROMOD ? m[0] : eta);
            for (int j = 0; j < N; j++) Fo[j] = clampr(P_SCALED(Fi[j], u, h[j]), clip);
        }
    }
}

/* Apply a pending trace update in place (at a checkpoint and after the last step only: rare). */
static inline __attribute__((always_inline)) void apply_pending(const config *c, const int N, const real *hp,
                                                                const real *h, const real *m, real *F, real *E,
                                                                real *scratch) {
    const size_t NN = (size_t)N * N;
    trace_update_to(c, N, hp, h, m, F, E, scratch, E ? scratch + NN : NULL);
    memcpy(F, scratch, NN * sizeof(real));
    if (E) memcpy(E, scratch + NN, NN * sizeof(real));
}

/* One pass per row: apply the previous step's pending trace update to row i (same expressions as
 * trace_update, so the same rounding), then add row i's drive. The row is read once. */
static inline __attribute__((always_inline)) real step_forward_pending(
    const config *c, const int N, const real *restrict xp_t, real ext_t, const real *restrict hp, real *restrict F,
    real *restrict E, real *restrict a, real *restrict h, real *restrict m, const real *restrict php,
    const real *restrict ph, const real *restrict pm) {
    const int rule = c->rule, fan = c->mod == M_FANOUT;
    const real clip = c->clip, eta = c->eta, keep = 1 - c->eta;
    memcpy(a, xp_t, N * sizeof(real));
    for (int i = 0; i < N; i++) {
        const real hi = hp[i], pi = php[i];
        const real *restrict wi = c->w + (size_t)i * N;
        const real *restrict ai = c->alpha_full ? c->alpha + (size_t)i * N : c->alpha;
        real *restrict Fi = F + (size_t)i * N;
        if (rule == R_HEBBIAN) {
            const real u = pi * eta;
            for (int j = 0; j < N; j++) {
                const real f = P_HEBB(Fi[j], keep, u, ph[j]);
                Fi[j] = f;
                a[j] += hi * (wi[j] + ai[j] * f);
            }
        } else if (rule == R_RETRO) {
            real *restrict Ei = E + (size_t)i * N;
            const real u = pi * eta;
            for (int j = 0; j < N; j++) {
                const real f = clampr(P_RETRO(Fi[j], Ei[j], pm[j]), clip);
                Fi[j] = f;
                Ei[j] = Ei[j] * keep + u * ph[j];
                a[j] += hi * (wi[j] + ai[j] * f);
            }
        } else if (rule == R_NEUROMOD && fan) {
            for (int j = 0; j < N; j++) {
                const real f = clampr(P_FANOUT(Fi[j], pi, pm[j], ph[j]), clip);
                Fi[j] = f;
                a[j] += hi * (wi[j] + ai[j] * f);
            }
        } else {
            const real u = pi * (rule == R_NEUROMOD ? pm[0] : eta);
            for (int j = 0; j < N; j++) {
                const real f = clampr(P_SCALED(Fi[j], u, ph[j]), clip);
                Fi[j] = f;
                a[j] += hi * (wi[j] + ai[j] * f);
            }
        }
    }
    return finish_step(c, N, ext_t, a, h, m);
}

/* Run body(ctx, begin, end, tid) over static chunks of [0, n) on up to nthreads threads. */
typedef void (*chunk_fn)(void *ctx, int begin, int end, int tid);
typedef struct {
    chunk_fn fn;
    void *ctx;
    int begin, end, tid;
} chunk;

static void *run_chunk(void *arg) {
    chunk *c = arg;
    c->fn(c->ctx, c->begin, c->end, c->tid);
    return NULL;
}

#define MAX_THREADS 256
static void parallel_for(int n, int nthreads, chunk_fn fn, void *ctx) {
    if (nthreads > n) nthreads = n;
    if (nthreads > MAX_THREADS) nthreads = MAX_THREADS;
    if (nthreads < 1) nthreads = 1;
    pthread_t threads[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    chunk chunks[MAX_THREADS];
    for (int k = 0; k < nthreads; k++) {
        chunks[k] = (chunk){fn, ctx, (int)((long)n * k / nthreads), (int)((long)n * (k + 1) / nthreads), k};
    }
    for (int k = 1; k < nthreads; k++) started[k] = pthread_create(&threads[k], NULL, run_chunk, &chunks[k]) == 0;
    run_chunk(&chunks[0]);
    for (int k = 1; k < nthreads; k++) {
        if (started[k]) pthread_join(threads[k], NULL);
        else run_chunk(&chunks[k]); /* could not start a thread: do its share here */
    }
}

/* Sizes get a specialised copy of the per-sequence bodies (constant trip counts: no alias checks,
 * peeling or epilogues in the short inner loops); other sizes run the generic copy. */
#define DISPATCH_N(N, CALL)              \
    switch (N) {                         \
        case 32: CALL(32); break;        \
        case 64: CALL(64); break;        \
        case 128: CALL(128); break;      \
        case 256: CALL(256); break;      \
        default: CALL(N); break;         \
    }

#endif
