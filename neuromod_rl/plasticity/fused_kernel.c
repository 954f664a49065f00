/*
 * CPU kernel of the fused plastic-RNN scan (see fused.py and fused_cpu.py).
 *
 * One sequence per OpenMP iteration: its fast-weight tile F[b] (N x N) stays in L1/L2 for all T
 * steps, so a step costs a few passes over cache-resident memory instead of a dozen passes over
 * B x N x N tensors in DRAM. Compiled twice, with -DREAL=float and -DREAL=double.
 *
 * Layouts (row-major, contiguous): xp, H [T,B,N]; starts [T,B] (uint8); F, E [B,N,N] with F[b,i,j],
 * i presynaptic, j postsynaptic; w, alpha_full [N,N]; alpha_vec [N] (per postsynaptic neuron).
 * Built with -ffp-contract=off so that the backward replay reproduces the forward's rounding
 * exactly (the clip masks must agree).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

typedef REAL real;

enum { R_NEUROMOD = 0, R_CLIPPED = 1, R_HEBBIAN = 2, R_RETRO = 3 };
enum { M_NONE = 0, M_SCALAR = 1, M_FANOUT = 2 };

typedef struct {
    int T, B, N, rule, alpha_full, mod, external, K, nthreads;
    real clip, eta, bm;
    const real *w, *alpha, *wm, *wf, *bf;
} config;

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

/* The trace update of one step, in place (equations: neuromod_rl/plasticity/rules). */
static inline __attribute__((always_inline)) void trace_update(const config *c, const int N, const real *restrict hp, const real *restrict h, const real *restrict m,
                         real *restrict F, real *restrict E) {
    const int rule = c->rule, fan = c->mod == M_FANOUT;
    const real clip = c->clip, eta = c->eta, keep = 1 - c->eta;
    for (int i = 0; i < N; i++) {
        real *restrict Fi = F + (size_t)i * N;
        const real hi = hp[i];
        if (rule == R_HEBBIAN) {
            const real u = hi * eta;
            for (int j = 0; j < N; j++) Fi[j] = P_HEBB(Fi[j], keep, u, h[j]);
        } else if (rule == R_RETRO) {
            real *restrict Ei = E + (size_t)i * N;
            const real u = hi * eta;
            for (int j = 0; j < N; j++) {
                Fi[j] = clampr(P_RETRO(Fi[j], Ei[j], m[j]), clip);
                Ei[j] = Ei[j] * keep + u * h[j];
            }
        } else if (rule == R_NEUROMOD && fan) {
            for (int j = 0; j < N; j++) Fi[j] = clampr(P_FANOUT(Fi[j], hi, m[j], h[j]), clip);
        } else {
            const real u = hi * (rule == R_NEUROMOD ? m[0] : eta);
            for (int j = 0; j < N; j++) Fi[j] = clampr(P_SCALED(Fi[j], u, h[j]), clip);
        }
    }
}

/* h = tanh(xp + hp (w + alpha . F)); then M(t); returns the scalar M(t) and fills m. */
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

/* trace_update written out of place (Fout = update(Fin)), with the same expressions, for the
 * backward replay: each step's entering trace goes straight into its slot. */
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

/* Backward of the trace update for one step: masks dF by the clip (dF -> dP), accumulates
 * u[j] = sum_i hp[i] dX[i][j] and v[i] = sum_j dX[i][j] h[j] (times m[j] for neuromod fan-out), where
 * dX is dP (neuromod, clipped), dF (hebbian) or dE (retroactive); updates dE, dm/dms and gsub. */
static inline __attribute__((always_inline)) void trace_backward(const config *c, const int N, const real *restrict hp, const real *restrict h, const real *restrict m,
                           const real *restrict Fb, const real *restrict Eb, real *restrict dF, real *restrict dE,
                           real *restrict u, real *restrict v, real *restrict dm, real *dms_out, real *gsub_out) {
    const int rule = c->rule, fan = c->mod == M_FANOUT;
    const real clip = c->clip, eta = c->eta, keep = 1 - c->eta;
    real dms = 0, gsub = 0;
    for (int i = 0; i < N; i++) {
        const real hi = hp[i];
        const real *restrict Fi = Fb + (size_t)i * N;
        real *restrict dFi = dF + (size_t)i * N;
        real vi = 0;
        if (rule == R_HEBBIAN) {
#pragma omp simd reduction(+ : vi, gsub)
            for (int j = 0; j < N; j++) {
                const real x = dFi[j];
                vi += x * h[j];
                u[j] += hi * x;
                gsub += x * Fi[j];
                dFi[j] = x * keep;
            }
        } else if (rule == R_RETRO) {
            const real *restrict Ei = Eb + (size_t)i * N;
            real *restrict dEi = dE + (size_t)i * N;
#pragma omp simd reduction(+ : vi, gsub)
            for (int j = 0; j < N; j++) {
                const real P = P_RETRO(Fi[j], Ei[j], m[j]);
                const real x = (P < -clip || P > clip) ? 0 : dFi[j];
                const real y = dEi[j];
                dFi[j] = x;
                dm[j] += x * Ei[j];
                vi += y * h[j];
                u[j] += hi * y;
                gsub += y * Ei[j];
                dEi[j] = y * keep + x * m[j];
            }
        } else if (rule == R_NEUROMOD && fan) {
#pragma omp simd reduction(+ : vi)
            for (int j = 0; j < N; j++) {
                const real P = P_FANOUT(Fi[j], hi, m[j], h[j]);
                const real x = (P < -clip || P > clip) ? 0 : dFi[j];
                dFi[j] = x;
                vi += x * (m[j] * h[j]);
                u[j] += hi * x;
            }
        } else {
            const real uu = hi * (rule == R_NEUROMOD ? m[0] : eta);
#pragma omp simd reduction(+ : vi)
            for (int j = 0; j < N; j++) {
                const real P = P_SCALED(Fi[j], uu, h[j]);
                const real x = (P < -clip || P > clip) ? 0 : dFi[j];
                dFi[j] = x;
                vi += x * h[j];
                u[j] += hi * x;
            }
        }
        v[i] = vi;
    }
    if (rule == R_RETRO && !fan) { /* scalar M(t): its gradient is the sum over postsynaptic neurons */
        for (int j = 0; j < N; j++) dms += dm[j];
        memset(dm, 0, N * sizeof(real));
    }
    *dms_out += dms;
    *gsub_out += gsub;
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

typedef struct {
    const real *xp, *ext, *h0;
    const uint8_t *starts;
    real *F, *E, *H, *MS, *MF, *F_ck, *E_ck;
} fwd_io;

static inline __attribute__((always_inline)) void forward_sequence(const config *c, const int N, int b,
                                                                   const fwd_io *io, real *buf) {
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
            if (pending) trace_update(c, N, php, ph, pm, Fb, Eb);
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
    if (pending) trace_update(c, N, php, ph, pm, Fb, Eb);
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
    if (!buf) {
        job->failed = 1;
        return;
    }
    for (int b = begin; b < end; b++) {
#define FWD(n) forward_sequence(job->c, n, b, job->io, buf)
        DISPATCH_N(N, FWD)
#undef FWD
    }
    free(buf);
}

/* Returns 0, or 1 when scratch memory could not be allocated (the outputs are then incomplete). */
int plastic_rnn_forward(int T, int B, int N, int rule, int alpha_full, int mod, int external, int K, int nthreads,
                         real clip, real eta, real bm, const real *w, const real *alpha, const real *wm,
                         const real *wf, const real *bf, const real *xp, const uint8_t *starts, const real *ext,
                         const real *h0, real *F, real *E, real *H, real *MS, real *MF, real *F_ck, real *E_ck) {
    const config cfg = {T, B, N, rule, alpha_full, mod, external, K, nthreads, clip, eta, bm, w, alpha, wm, wf, bf};
    const fwd_io io = {xp, ext, h0, starts, F, E, H, MS, MF, F_ck, E_ck};
    fwd_job job = {&cfg, &io, 0};
    parallel_for(B, nthreads, forward_chunk, (void *)&job);
    return job.failed;
}

typedef struct {
    const uint8_t *starts;
    const real *h0, *H, *MS, *F_ck, *E_ck, *gH;
    real *dh, *dF, *dE, *gxp, *gms, *gmf, *geta;
} bwd_io;

typedef struct { /* per-thread scratch */
    real *segF, *segE, *hp, *dhp, *u, *v, *m, *dm, *da, *galpha;
} bwd_scratch;

/* One step of the backward pass; dh, dF, dE hold the gradients w.r.t. this step's outputs and leave
 * holding those w.r.t. its inputs. */
static inline __attribute__((always_inline)) void backward_step(const config *c, const int N, int t, int b,
                                                                const bwd_io *io, const bwd_scratch *s,
                                                                const real *Fb, const real *Eb, real *dh, real *dF,
                                                                real *dE, real *geta_b) {
    const int B = c->B, rule = c->rule, mod = c->mod;
    const size_t tb = (size_t)t * B + b, NN = (size_t)N * N;
    const real eta = c->eta;
    real *restrict hp = s->hp, *restrict dhp = s->dhp, *restrict u = s->u, *restrict v = s->v, *restrict m = s->m,
         *restrict dm = s->dm, *restrict da = s->da;
    const real *restrict h = io->H + tb * N;
    const real ms = mod != M_NONE ? io->MS[tb] : 0;
    pre_activity(c, N, t, b, io->h0, io->H, io->starts, hp);
    fan_out(c, N, ms, m);
    if (io->gH)
        for (int j = 0; j < N; j++) dh[j] += io->gH[tb * N + j];
    memset(dhp, 0, N * sizeof(real));
    memset(u, 0, N * sizeof(real));
    memset(dm, 0, N * sizeof(real));
    real dms = 0, gsub = 0;
    /* -- the trace update: dF becomes dP, the gradient of the pre-clip trace -- */
    trace_backward(c, N, hp, h, m, Fb, Eb, dF, dE, u, v, dm, &dms, &gsub);
    if (rule == R_NEUROMOD) {
        if (mod == M_FANOUT) {
            for (int j = 0; j < N; j++) dm[j] = h[j] * u[j];
            for (int i = 0; i < N; i++) dhp[i] += v[i];
            for (int j = 0; j < N; j++) dh[j] += m[j] * u[j];
        } else {
            for (int i = 0; i < N; i++) {
                dms += hp[i] * v[i];
                dhp[i] += ms * v[i];
            }
            for (int j = 0; j < N; j++) dh[j] += ms * u[j];
        }
    } else { /* eta-scaled Hebbian term: clipped and hebbian on F, retroactive on E */
        real hv = 0;
        for (int i = 0; i < N; i++) {
            hv += hp[i] * v[i];
            dhp[i] += eta * v[i];
        }
        for (int j = 0; j < N; j++) dh[j] += eta * u[j];
        *geta_b += hv - gsub;
    }
    /* -- the modulator head -- */
    if (mod != M_NONE) {
        if (mod == M_FANOUT) {
            for (int j = 0; j < N; j++) {
                io->gmf[tb * N + j] = dm[j];
                dms += dm[j] * c->wf[j];
            }
        }
        if (c->external) {
            io->gms[tb] = dms;
        } else {
            const real dz = dms * (1 - ms * ms);
            io->gms[tb] = dz;
            for (int j = 0; j < N; j++) dh[j] += dz * c->wm[j];
        }
    }
    /* -- h = tanh(xp + hp (w + alpha . Fb)) -- */
    for (int j = 0; j < N; j++) {
        da[j] = dh[j] * (1 - h[j] * h[j]);
        io->gxp[tb * N + j] = da[j];
    }
    for (int i = 0; i < N; i++) {
        const real hi = hp[i];
        const real *restrict wi = c->w + (size_t)i * N, *restrict Fi = Fb + (size_t)i * N;
        const real *restrict ai = c->alpha_full ? c->alpha + (size_t)i * N : c->alpha;
        real *restrict dFi = dF + (size_t)i * N;
        real *restrict gai = c->alpha_full ? s->galpha + (size_t)i * N : s->galpha;
        real acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int j = 0; j < N; j++) {
            const real hda = hi * da[j];
            acc += (wi[j] + ai[j] * Fi[j]) * da[j];
            dFi[j] += ai[j] * hda;
            gai[j] += Fi[j] * hda;
        }
        dhp[i] += acc;
    }
    if (io->starts && io->starts[tb]) {
        memset(dhp, 0, N * sizeof(real));
        memset(dF, 0, NN * sizeof(real));
        if (dE) memset(dE, 0, NN * sizeof(real));
    }
    memcpy(dh, dhp, N * sizeof(real));
}

static inline __attribute__((always_inline)) void backward_sequence(const config *c, const int N, int b,
                                                                    const bwd_io *io, const bwd_scratch *s) {
    const int T = c->T, B = c->B, K = c->K, retro = c->rule == R_RETRO;
    const size_t NN = (size_t)N * N;
    real *dh = io->dh + (size_t)b * N, *dF = io->dF + b * NN, *dE = retro ? io->dE + b * NN : NULL;
    real geta_b = 0;
    for (int seg = (T - 1) / K; seg >= 0; seg--) {
        const int t0 = seg * K, t1 = t0 + K < T ? t0 + K : T;
        /* replay the segment forward from its checkpoint, writing the trace entering each step into its slot */
        for (int t = t0; t < t1; t++) {
            const size_t tb = (size_t)t * B + b;
            real *Fs = s->segF + (size_t)(t - t0) * NN, *Es = retro ? s->segE + (size_t)(t - t0) * NN : NULL;
            if (io->starts && io->starts[tb]) {
                memset(Fs, 0, NN * sizeof(real));
                if (retro) memset(Es, 0, NN * sizeof(real));
            } else if (t == t0) {
                memcpy(Fs, io->F_ck + ((size_t)seg * B + b) * NN, NN * sizeof(real));
                if (retro) memcpy(Es, io->E_ck + ((size_t)seg * B + b) * NN, NN * sizeof(real));
            } else {
                const size_t tp = tb - B; /* the previous step */
                pre_activity(c, N, t - 1, b, io->h0, io->H, io->starts, s->hp);
                fan_out(c, N, c->mod != M_NONE ? io->MS[tp] : 0, s->m);
                trace_update_to(c, N, s->hp, io->H + tp * N, s->m, Fs - NN, retro ? Es - NN : NULL, Fs, Es);
            }
        }
        for (int t = t1 - 1; t >= t0; t--) {
            const real *Fb = s->segF + (size_t)(t - t0) * NN, *Eb = retro ? s->segE + (size_t)(t - t0) * NN : NULL;
            backward_step(c, N, t, b, io, s, Fb, Eb, dh, dF, dE, &geta_b);
        }
    }
    io->geta[b] = geta_b;
}

typedef struct {
    const config *c;
    const bwd_io *io;
    real *galpha;
    volatile int failed;
} bwd_job;

static void backward_chunk(void *ctx, int begin, int end, int tid) {
    bwd_job *job = ctx;
    const config *c = job->c;
    const int N = c->N, K = c->K;
    const size_t NN = (size_t)N * N;
    const int retro = c->rule == R_RETRO;
    real *vecs = malloc(7 * (size_t)N * sizeof(real));
    bwd_scratch s = {
        malloc((size_t)K * NN * sizeof(real)), retro ? malloc((size_t)K * NN * sizeof(real)) : NULL,
        vecs, vecs + N, vecs + 2 * N, vecs + 3 * N, vecs + 4 * N, vecs + 5 * N,
        vecs + 6 * N, job->galpha + (size_t)tid * (c->alpha_full ? NN : (size_t)N),
    };
    if (!vecs || !s.segF || (retro && !s.segE)) {
        job->failed = 1;
        begin = end; /* skip the work, free what was allocated */
    }
    for (int b = begin; b < end; b++) {
#define BWD(n) backward_sequence(c, n, b, job->io, &s)
        DISPATCH_N(N, BWD)
#undef BWD
    }
    free(s.segF);
    free(s.segE);
    free(vecs);
}

/*
 * Backward. In: gH [T,B,N] (or NULL), dh [B,N] = dL/dh_T, dF/dE [B,N,N] = dL/dF_T, dL/dE_T.
 * Out (in place): dh = dL/dh0, dF = dL/dF0, dE = dL/dE0; gxp [T,B,N] = dL/d(pre-activation);
 * gms [T,B] = dL/dM(t) (external) or dL/dz (learned head, z the pre-tanh of M); gmf [T,B,N] = dL/dm
 * (fan-out); galpha [nthreads, N*N or N] and geta [B] partial sums, reduced by the caller.
 * Returns 0, or 1 when scratch memory could not be allocated.
 */
int plastic_rnn_backward(int T, int B, int N, int rule, int alpha_full, int mod, int external, int K, int nthreads,
                          real clip, real eta, real bm, const real *w, const real *alpha, const real *wm,
                          const real *wf, const real *bf, const uint8_t *starts, const real *h0, const real *H,
                          const real *MS, const real *F_ck, const real *E_ck, const real *gH, real *dh_io,
                          real *dF_io, real *dE_io, real *gxp, real *gms, real *gmf, real *galpha, real *geta) {
    const config cfg = {T, B, N, rule, alpha_full, mod, external, K, nthreads, clip, eta, bm, w, alpha, wm, wf, bf};
    const bwd_io io = {starts, h0, H, MS, F_ck, E_ck, gH, dh_io, dF_io, dE_io, gxp, gms, gmf, geta};
    bwd_job job = {&cfg, &io, galpha, 0};
    parallel_for(B, nthreads, backward_chunk, (void *)&job);
    return job.failed;
}
