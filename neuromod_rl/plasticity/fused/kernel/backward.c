/* Backward pass of the fused plastic-RNN CPU kernel (the forward and the layouts: forward.c). */
#include "fused_kernel.h"

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
        vecs + 6 * N, job->io->galpha + (size_t)tid * (c->alpha_full ? NN : (size_t)N),
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

int plastic_rnn_backward(const config *c, const bwd_io *io) {
    bwd_job job = {c, io, 0};
    parallel_for(c->B, c->nthreads, backward_chunk, (void *)&job);
    return job.failed;
}
