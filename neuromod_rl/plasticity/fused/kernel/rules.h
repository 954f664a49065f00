/*
 * One plastic layer of the fused kernel: its drive x (w + alpha . F), the rules' trace updates
 * (equations: neuromod_rl/plasticity/rules) and their backward passes. x is the layer's presynaptic
 * activity [NI], y its postsynaptic activity [NO], m the effective modulation per postsynaptic neuron
 * [NO] (the scalar M(t) repeated, its fan-out, or ones without modulation).
 */
#ifndef NEUROMOD_RL_FUSED_RULES_H
#define NEUROMOD_RL_FUSED_RULES_H

#include "fused_kernel.h"

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

/* sigmoid(x) = (1 + tanh(x/2)) / 2: vectorises through the same tanh */
static inline real sigmoidr(real x) { return (real)0.5 + (real)0.5 * tanhr((real)0.5 * x); }

static inline real activate(int act, real a) { return act == A_TANH ? tanhr(a) : (act == A_RELU ? (a > 0 ? a : 0) : a); }

/* d act / d a, from the activation's output y */
static inline real activation_slope(int act, real y) { return act == A_TANH ? 1 - y * y : (act == A_RELU ? (y > 0) : 1); }

/* The effective modulation m[j] of postsynaptic neuron j from the scalar M(t) (ones without modulation). */
ALWAYS_INLINE void fan_out(const config *c, const int N, real ms, real *m) {
    for (int j = 0; j < N; j++) m[j] = c->mod == M_FANOUT ? ms * c->wf[j] + c->bf[j] : (c->mod == M_NONE ? 1 : ms);
}

/* M(t) from the head (or the caller) on the cell's output h, and its fan-out into m. */
ALWAYS_INLINE real modulate(const config *c, const int N, const real *restrict h, real ext_t, real *restrict m) {
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

/* Pre-clip values of F[i][j], written once so that the forward update and the backward replay and clip
 * masks round identically: u = x[i] * M(t) (neuromod, scalar), x[i] * eta (clipped, hebbian, E of retroactive). */
#define P_SCALED(F, u, yj) ((F) + (u) * (yj))
#define P_FANOUT(F, xi, mj, yj) ((F) + (xi) * ((mj) * (yj)))
#define P_RETRO(F, E, mj) ((F) + (E) * (mj))
#define P_HEBB(F, keep, u, yj) ((F) * (keep) + (u) * (yj))
#define P_OJA(F, eta, xi, yj) ((F) + ((eta) * (yj)) * ((xi) - (F) * (yj)))
#define ABCD_TERM(A, B, C, D, xi, yj) ((A) * (xi) * (yj) + (B) * (xi) + (C) * (yj) + (D))
#define P_ABCD(F, mj, e, A, B, C, D, xi, yj) ((F) + (mj) * ((e) * ABCD_TERM(A, B, C, D, xi, yj)))

/* Row i of one step's trace update (presynaptic activity xi): STORE(j, f) receives the new F[i][j]; the
 * eligibility rule also writes its new E row to Eo. */
#define TRACE_ROW(c, L, i, NO, xi, y, m, Fi, Ei, Eo, STORE)                                                            \
    do {                                                                                                         \
        const real clip_ = (L)->clip, eta_ = (L)->eta, keep_ = 1 - (L)->eta;                                     \
        switch ((L)->rule) {                                                                                     \
            case R_HEBBIAN: {                                                                                    \
                const real u_ = (xi) * eta_;                                                                     \
                for (int j = 0; j < (NO); j++) STORE(j, P_HEBB(Fi[j], keep_, u_, y[j]));                         \
            } break;                                                                                             \
            case R_RETRO: {                                                                                      \
                const real u_ = (xi) * eta_;                                                                     \
                for (int j = 0; j < (NO); j++) {                                                                 \
                    const real e_ = Ei[j];                                                                       \
                    Eo[j] = e_ * keep_ + u_ * y[j];                                                              \
                    STORE(j, clampr(P_RETRO(Fi[j], e_, m[j]), clip_));                                           \
                }                                                                                                \
            } break;                                                                                             \
            case R_OJA:                                                                                          \
                for (int j = 0; j < (NO); j++) STORE(j, P_OJA(Fi[j], eta_, (xi), y[j]));                         \
                break;                                                                                           \
            case R_ABCD: {                                                                                       \
                const size_t o_ = (size_t)(i) * (NO);                                                              \
                const real *restrict A_ = (L)->A + o_, *restrict B_ = (L)->Bc + o_, *restrict C_ = (L)->C + o_;  \
                const real *restrict D_ = (L)->D + o_, *restrict e_ = (L)->etas + o_;                            \
                for (int j = 0; j < (NO); j++) STORE(j, P_ABCD(Fi[j], m[j], e_[j], A_[j], B_[j], C_[j], D_[j], (xi), y[j])); \
            } break;                                                                                             \
            default:                                                                                             \
                if ((L)->rule == R_NEUROMOD && (c)->mod == M_FANOUT) {                                             \
                    for (int j = 0; j < (NO); j++) STORE(j, clampr(P_FANOUT(Fi[j], (xi), m[j], y[j]), clip_));   \
                } else {                                                                                         \
                    const real u_ = (xi) * ((L)->rule == R_NEUROMOD ? m[0] : eta_);                              \
                    for (int j = 0; j < (NO); j++) STORE(j, clampr(P_SCALED(Fi[j], u_, y[j]), clip_));           \
                }                                                                                                \
        }                                                                                                        \
    } while (0)

/* The trace update of one step, out of place: Fout = update(Fin). The backward replay writes each
 * step's trace straight into its slot; the forward applies it in place through a scratch copy. */
ALWAYS_INLINE void trace_update_to(const config *c, const layer *L, const int NI, const int NO,
                                   const real *restrict x, const real *restrict y, const real *restrict m,
                                   const real *restrict Fin, const real *restrict Ein, real *restrict Fout,
                                   real *restrict Eout) {
    for (int i = 0; i < NI; i++) {
        const real *restrict Fi = Fin + (size_t)i * NO, *restrict Ei = Ein ? Ein + (size_t)i * NO : NULL;
        real *restrict Fo = Fout + (size_t)i * NO, *restrict Eo = Eout ? Eout + (size_t)i * NO : NULL;
#define STORE_OUT(j, f) (Fo[j] = (f))
        TRACE_ROW(c, L, i, NO, x[i], y, m, Fi, Ei, Eo, STORE_OUT);
#undef STORE_OUT
    }
}

/* a[j] += sum_i x[i] (w[i][j] + alpha[i][j] F[i][j]). With `pending`, the previous step's trace update
 * (its activity px, py, pm) is applied to each row first, in the same pass (the same expressions as
 * trace_update_to, so the same rounding): the row is read once. A layer without slow weights passes
 * a row of zeros with w_stride 0. */
ALWAYS_INLINE void plastic_pass(const config *c, const layer *L, const int NI, const int NO,
                                const real *restrict x, real *restrict F, real *restrict E, real *restrict a,
                                const real *restrict w, const size_t w_stride, const int pending,
                                const real *restrict px, const real *restrict py, const real *restrict pm) {
    for (int i = 0; i < NI; i++) {
        const real xi = x[i];
        const real *restrict wi = w + (size_t)i * w_stride;
        const real *restrict ai = L->alpha_full ? L->alpha + (size_t)i * NO : L->alpha;
        real *restrict Fi = F + (size_t)i * NO;
        if (pending) {
            real *restrict Ei = E ? E + (size_t)i * NO : NULL;
#define STORE_DRIVE(j, f)                        \
    do {                                         \
        const real f_ = (f);                     \
        Fi[j] = f_;                              \
        a[j] += xi * (wi[j] + ai[j] * f_);       \
    } while (0)
            TRACE_ROW(c, L, i, NO, px[i], py, pm, Fi, Ei, Ei, STORE_DRIVE);
#undef STORE_DRIVE
        } else {
#pragma omp simd
            for (int j = 0; j < NO; j++) a[j] += xi * (wi[j] + ai[j] * Fi[j]);
        }
    }
}

/* Backward of one step's trace update of layer L. dF, dE hold the gradients w.r.t. the traces after the
 * update and leave holding those w.r.t. the traces before it (the clip masks dF first); adds into dx
 * (presynaptic), dy (postsynaptic), dm (fan-out) or *dms (scalar M(t)), and the rule's parameter
 * gradients at grad + L->g_off. u [NO] is scratch. */
ALWAYS_INLINE void trace_backward(const config *c, const layer *L, const int NI, const int NO,
                                  const real *restrict x, const real *restrict y, const real *restrict m, real ms,
                                  const real *restrict Fb, const real *restrict Eb, real *restrict dF,
                                  real *restrict dE, real *restrict dx, real *restrict dy, real *restrict dm,
                                  real *dms, real *restrict grad, real *restrict u) {
    const int rule = L->rule, fan = c->mod == M_FANOUT;
    const real clip = L->clip, eta = L->eta, keep = 1 - L->eta;
    const size_t NN = (size_t)NI * NO, NA = L->alpha_full ? NN : (size_t)NO;
    real *restrict geta = grad + L->g_off + NA;
    real gsum = 0, xv = 0;
    memset(u, 0, NO * sizeof(real));
    /* ABCD with max_norm: F' = G / s, s = max(max|G|, floor), G the updated trace. dF becomes dG =
     * dF'/s - (sum dF' G / s^2) ds/dG, ds/dG = sign(G) shared equally by the entries at the max. */
    real norm = 1, kick = 0, top = 0;
    if (rule == R_ABCD && L->max_norm) {
        real dot = 0;
        int count = 0;
        for (int pass = 0; pass < 2; pass++) {
            for (int i = 0; i < NI; i++) {
                const size_t o = (size_t)i * NO;
                const real *restrict Fi = Fb + o, *restrict dFi = dF + o;
                for (int j = 0; j < NO; j++) {
                    const real g = P_ABCD(Fi[j], m[j], L->etas[o + j], L->A[o + j], L->Bc[o + j], L->C[o + j], L->D[o + j],
                                          x[i], y[j]);
                    if (pass == 0) {
                        top = fabs(g) > top ? fabs(g) : top;
                        dot += dFi[j] * g;
                    } else {
                        count += fabs(g) == top;
                    }
                }
            }
        }
        norm = top < MAX_NORM_FLOOR ? MAX_NORM_FLOOR : top;
        kick = top < MAX_NORM_FLOOR ? 0 : -dot / (norm * norm) / count;
    }
    for (int i = 0; i < NI; i++) {
        const real xi = x[i];
        const real *restrict Fi = Fb + (size_t)i * NO;
        real *restrict dFi = dF + (size_t)i * NO;
        real vi = 0;
        if (rule == R_HEBBIAN) { /* F' = keep F + eta x y */
#pragma omp simd reduction(+ : vi, gsum)
            for (int j = 0; j < NO; j++) {
                const real d = dFi[j];
                vi += d * y[j];
                u[j] += xi * d;
                gsum -= d * Fi[j];
                dFi[j] = d * keep;
            }
            gsum += xi * vi;
            vi *= eta;
        } else if (rule == R_RETRO) { /* F' = clip(F + m E); E' = keep E + eta x y */
            const real *restrict Ei = Eb + (size_t)i * NO;
            real *restrict dEi = dE + (size_t)i * NO;
#pragma omp simd reduction(+ : vi, gsum)
            for (int j = 0; j < NO; j++) {
                const real P = P_RETRO(Fi[j], Ei[j], m[j]);
                const real d = (P < -clip || P > clip) ? 0 : dFi[j];
                const real e = dEi[j];
                dFi[j] = d;
                dm[j] += d * Ei[j];
                vi += e * y[j];
                u[j] += xi * e;
                gsum -= e * Ei[j];
                dEi[j] = e * keep + d * m[j];
            }
            gsum += xi * vi;
            vi *= eta;
        } else if (rule == R_OJA) { /* F' = F + eta y (x - F y) */
            real gi = 0;
#pragma omp simd reduction(+ : vi, gi)
            for (int j = 0; j < NO; j++) {
                const real d = dFi[j], f = Fi[j], yj = y[j], ey = eta * yj, r = xi - f * yj;
                gi += d * yj * r;
                vi += d * ey;
                u[j] += d * (eta * r - ey * f);
                dFi[j] = d * (1 - ey * yj);
            }
            gsum += gi;
        } else if (rule == R_ABCD) { /* F' = F + m eta (A x y + B x + C y + D), per synapse */
            const size_t o = (size_t)i * NO;
            const real *restrict A = L->A + o, *restrict Bc = L->Bc + o, *restrict C = L->C + o, *restrict D = L->D + o;
            const real *restrict e = L->etas + o;
            real *restrict gA = grad + L->g_off + NA + 1 + o;
            real *restrict gB = gA + NN, *restrict gC = gA + 2 * NN, *restrict gD = gA + 3 * NN, *restrict ge = gA + 4 * NN;
            if (L->max_norm) {
                for (int j = 0; j < NO; j++) {
                    const real g = P_ABCD(Fi[j], m[j], e[j], A[j], Bc[j], C[j], D[j], xi, y[j]);
                    dFi[j] = dFi[j] / norm + (fabs(g) == top ? (g > 0 ? kick : -kick) : 0);
                }
            }
#pragma omp simd reduction(+ : vi)
            for (int j = 0; j < NO; j++) {
                const real d = dFi[j], yj = y[j], s = ABCD_TERM(A[j], Bc[j], C[j], D[j], xi, yj);
                const real q = d * m[j], qe = q * e[j];
                dm[j] += d * (e[j] * s);
                ge[j] += q * s;
                gA[j] += qe * xi * yj;
                gB[j] += qe * xi;
                gC[j] += qe * yj;
                gD[j] += qe;
                vi += qe * (A[j] * yj + Bc[j]);
                u[j] += qe * (A[j] * xi + C[j]);
            }
        } else if (rule == R_NEUROMOD && fan) { /* F' = clip(F + x m y) */
#pragma omp simd reduction(+ : vi)
            for (int j = 0; j < NO; j++) {
                const real P = P_FANOUT(Fi[j], xi, m[j], y[j]);
                const real d = (P < -clip || P > clip) ? 0 : dFi[j];
                dFi[j] = d;
                vi += d * (m[j] * y[j]);
                u[j] += xi * d;
            }
        } else { /* neuromod (scalar M) and clipped: F' = clip(F + x k y), k = M(t) or eta */
            const real k = rule == R_NEUROMOD ? ms : eta;
            const real uu = xi * k;
#pragma omp simd reduction(+ : vi)
            for (int j = 0; j < NO; j++) {
                const real P = P_SCALED(Fi[j], uu, y[j]);
                const real d = (P < -clip || P > clip) ? 0 : dFi[j];
                dFi[j] = d;
                vi += d * y[j];
                u[j] += xi * d;
            }
            xv += xi * vi;
            vi *= k;
        }
        dx[i] += vi;
    }
    /* the postsynaptic gradient, scaled as the update scales y */
    if (rule == R_NEUROMOD && fan) {
        for (int j = 0; j < NO; j++) {
            dm[j] += y[j] * u[j];
            dy[j] += m[j] * u[j];
        }
    } else if (rule == R_OJA || rule == R_ABCD) {
        for (int j = 0; j < NO; j++) dy[j] += u[j];
    } else {
        const real k = rule == R_NEUROMOD ? ms : eta;
        for (int j = 0; j < NO; j++) dy[j] += k * u[j];
    }
    if (rule == R_NEUROMOD && !fan) *dms += xv;
    if (rule == R_CLIPPED) *geta += xv;
    if (rule == R_HEBBIAN || rule == R_RETRO || rule == R_OJA) *geta += gsum;
}

/* Backward of a += x (w + alpha . Fb) given da: adds into dx, dF (w.r.t. the trace the drive read) and the
 * alpha gradient at grad + L->g_off. (The slow weights' gradient is one matrix product, done by the caller.) */
ALWAYS_INLINE void drive_backward(const layer *L, const int NI, const int NO, const real *restrict x,
                                  const real *restrict Fb, const real *restrict da, const real *restrict w,
                                  const size_t w_stride, real *restrict dx, real *restrict dF, real *restrict grad) {
    for (int i = 0; i < NI; i++) {
        const real xi = x[i];
        const real *restrict wi = w + (size_t)i * w_stride, *restrict Fi = Fb + (size_t)i * NO;
        const real *restrict ai = L->alpha_full ? L->alpha + (size_t)i * NO : L->alpha;
        real *restrict dFi = dF + (size_t)i * NO;
        real *restrict gai = grad + L->g_off + (L->alpha_full ? (size_t)i * NO : 0);
        real acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int j = 0; j < NO; j++) {
            const real xda = xi * da[j];
            acc += (wi[j] + ai[j] * Fi[j]) * da[j];
            dFi[j] += ai[j] * xda;
            gai[j] += Fi[j] * xda;
        }
        dx[i] += acc;
    }
}

/* Backward of the modulator head given dm (fan-out) and dms: writes gmf/gms of step tb, adds into dh. */
ALWAYS_INLINE void modulator_backward(const config *c, const int N, size_t tb, real ms, const real *restrict dm,
                                      real dms, real *restrict dh, real *restrict gms, real *restrict gmf) {
    if (c->mod == M_NONE) return;
    if (c->mod == M_FANOUT) {
        for (int j = 0; j < N; j++) {
            gmf[tb * N + j] = dm[j];
            dms += dm[j] * c->wf[j];
        }
    } else {
        for (int j = 0; j < N; j++) dms += dm[j]; /* a scalar M(t) repeated over the neurons */
    }
    if (c->external) {
        gms[tb] = dms;
    } else {
        const real dz = dms * (1 - ms * ms);
        gms[tb] = dz;
        for (int j = 0; j < N; j++) dh[j] += dz * c->wm[j];
    }
}

#endif
