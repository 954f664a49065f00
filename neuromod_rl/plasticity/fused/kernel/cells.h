/*
 * One time step of each cell, forward and backward (equations: neuromod_rl/plasticity/cells.py). The
 * drivers that run them over sequences, with resets, trace checkpoints and the backward replay, are
 * forward.c and backward.c.
 */
#ifndef NEUROMOD_RL_FUSED_CELLS_H
#define NEUROMOD_RL_FUSED_CELLS_H

#include "rules.h"

/* Forward of step t of sequence b. With `pending`, each layer first applies step t-1's trace update
 * (the activity of step t-1, modulation pm) in the pass that reads its trace. Writes the H and AUX rows
 * of the step, fills m and returns the scalar M(t). a: scratch of 4N. */
ALWAYS_INLINE real cell_forward(const config *c, const int N, const seqs *s, const fwd_io *io, int t, int b,
                                real *F, real *E, real *restrict a, real *restrict m, int pending,
                                const real *restrict pm) {
    const size_t tb = (size_t)t * c->B + b;
    const real ext_t = io->ext ? io->ext[tb] : 0;
    real *h = io->H + tb * N;
    if (c->cell == C_MLP) {
        const real *x = io->xp + tb * c->X;
        int NI = c->X;
        for (int l = 0; l < c->n_layers; l++) {
            const layer *L = c->layers + l;
            real *out = (real *)post_of(c, N, s, l, t, b);
            if (L->b) memcpy(a, L->b, N * sizeof(real));
            else memset(a, 0, N * sizeof(real));
            plastic_pass(c, L, NI, N, x, F + L->f_off, E ? E + L->f_off : NULL, a, L->w ? L->w : s->zeros,
                         L->w ? (size_t)L->w_cols : 0, pending, pending ? pre_of(c, N, s, l, t - 1, b) : NULL,
                         pending ? post_of(c, N, s, l, t - 1, b) : NULL, pm);
            for (int j = 0; j < N; j++) out[j] = activate(L->act, a[j]);
            x = out;
            NI = N;
        }
        return modulate(c, N, h, ext_t, m);
    }
    const layer *L = c->layers;
    const real *restrict hp = pre_of(c, N, s, 0, t, b);
    const real *php = pending ? pre_of(c, N, s, 0, t - 1, b) : NULL;
    const real *ppost = pending ? post_of(c, N, s, 0, t - 1, b) : NULL;
    if (c->cell == C_RNN) { /* h = tanh(xp + hp (w + alpha . F)) */
        memcpy(a, io->xp + tb * N, N * sizeof(real));
        plastic_pass(c, L, N, N, hp, F, E, a, L->w, N, pending, php, ppost, pm);
#pragma omp simd
        for (int j = 0; j < N; j++) h[j] = tanhr(a[j]);
        return modulate(c, N, h, ext_t, m);
    }
    /* LSTM: gate blocks i, f, g, o; only the candidate's recurrent matrix is plastic */
    const size_t G4 = 4 * (size_t)N;
    memcpy(a, io->xp + tb * G4, G4 * sizeof(real));
    for (int i = 0; i < N; i++) {
        const real hi = hp[i];
        const real *restrict wi = L->w + i * G4;
#pragma omp simd
        for (int j = 0; j < 2 * N; j++) a[j] += hi * wi[j];
#pragma omp simd
        for (int j = 3 * N; j < 4 * N; j++) a[j] += hi * wi[j];
    }
    plastic_pass(c, L, N, N, hp, F, E, a + 2 * N, L->w + 2 * N, G4, pending, php, ppost, pm);
    const real *restrict cp = prev_cell(c, N, s, t, b);
    real *restrict aux = io->AUX + tb * 5 * N;
#pragma omp simd
    for (int j = 0; j < N; j++) {
        const real ig = sigmoidr(a[j]), fg = sigmoidr(a[N + j]), gg = tanhr(a[2 * N + j]), og = sigmoidr(a[3 * N + j]);
        const real cc = fg * cp[j] + ig * gg;
        aux[LSTM_C * N + j] = cc;
        aux[LSTM_I * N + j] = ig;
        aux[LSTM_F * N + j] = fg;
        aux[LSTM_G * N + j] = gg;
        aux[LSTM_O * N + j] = og;
        h[j] = og * tanhr(cc);
    }
    return modulate(c, N, h, ext_t, m);
}

typedef struct { /* per-thread vectors of the backward step */
    real *m, *dm, *u, *dhp, *dg, *dY;
} bwd_vecs;

/* Backward of step t of sequence b. dh, dc, dF, dE hold the gradients w.r.t. the step's outputs (h_t,
 * c_t, the traces after it) and leave holding those w.r.t. its inputs. Fb, Eb: the traces entering it. */
ALWAYS_INLINE void cell_backward(const config *c, const int N, const seqs *s, const bwd_io *io, int t, int b,
                                 const real *Fb, const real *Eb, real *restrict dh, real *restrict dc, real *dF,
                                 real *dE, real *restrict grad, const bwd_vecs *v) {
    const size_t tb = (size_t)t * c->B + b;
    const real ms = c->mod != M_NONE ? io->MS[tb] : 0;
    real *restrict m = v->m, *restrict dm = v->dm;
    real dms = 0;
    fan_out(c, N, ms, m);
    memset(dm, 0, N * sizeof(real));
    if (c->cell == C_MLP) {
        const int nl = c->n_layers;
        real *restrict dY = v->dY, *restrict dx0 = io->gxp + tb * c->X;
        memset(dY, 0, (size_t)nl * N * sizeof(real));
        memset(dx0, 0, c->X * sizeof(real));
        if (io->gH)
            for (int j = 0; j < N; j++) dY[(size_t)(nl - 1) * N + j] += io->gH[tb * N + j];
        for (int l = 0; l < nl; l++) {
            const layer *L = c->layers + l;
            trace_backward(c, L, l ? N : c->X, N, pre_of(c, N, s, l, t, b), post_of(c, N, s, l, t, b), m, ms,
                           Fb + L->f_off, Eb ? Eb + L->f_off : NULL, dF + L->f_off, dE ? dE + L->f_off : NULL,
                           l ? dY + (size_t)(l - 1) * N : dx0, dY + (size_t)l * N, dm, &dms, grad, v->u);
        }
        modulator_backward(c, N, tb, ms, dm, dms, dY + (size_t)(nl - 1) * N, io->gms, io->gmf);
        for (int l = nl - 1; l >= 0; l--) {
            const layer *L = c->layers + l;
            const real *restrict y = post_of(c, N, s, l, t, b);
            real *restrict da = io->gA + tb * nl * N + (size_t)l * N;
            for (int j = 0; j < N; j++) da[j] = dY[(size_t)l * N + j] * activation_slope(L->act, y[j]);
            drive_backward(L, l ? N : c->X, N, pre_of(c, N, s, l, t, b), Fb + L->f_off, da,
                           L->w ? L->w : s->zeros, L->w ? (size_t)L->w_cols : 0,
                           l ? dY + (size_t)(l - 1) * N : dx0, dF + L->f_off, grad);
        }
        if (is_start(c, s, t, b)) { /* the traces entering this step were reset: nothing flows further back */
            memset(dF, 0, c->S * sizeof(real));
            if (dE) memset(dE, 0, c->S * sizeof(real));
        }
        return;
    }
    const layer *L = c->layers;
    const real *restrict hp = pre_of(c, N, s, 0, t, b), *restrict h = io->H + tb * N;
    real *restrict dhp = v->dhp;
    memset(dhp, 0, N * sizeof(real));
    if (io->gH)
        for (int j = 0; j < N; j++) dh[j] += io->gH[tb * N + j];
    if (c->cell == C_RNN) {
        real *restrict da = io->gxp + tb * N;
        trace_backward(c, L, N, N, hp, h, m, ms, Fb, Eb, dF, dE, dhp, dh, dm, &dms, grad, v->u);
        modulator_backward(c, N, tb, ms, dm, dms, dh, io->gms, io->gmf);
        for (int j = 0; j < N; j++) da[j] = dh[j] * (1 - h[j] * h[j]);
        drive_backward(L, N, N, hp, Fb, da, L->w, N, dhp, dF, grad);
    } else { /* LSTM */
        const size_t G4 = 4 * (size_t)N;
        const real *restrict aux = io->AUX + tb * 5 * N;
        const real *restrict cc = aux + LSTM_C * N, *restrict ig = aux + LSTM_I * N, *restrict fg = aux + LSTM_F * N;
        const real *restrict gg = aux + LSTM_G * N, *restrict og = aux + LSTM_O * N;
        const real *restrict cp = prev_cell(c, N, s, t, b);
        real *restrict dg = v->dg, *restrict da = io->gxp + tb * G4;
        memset(dg, 0, N * sizeof(real));
        trace_backward(c, L, N, N, hp, gg, m, ms, Fb, Eb, dF, dE, dhp, dg, dm, &dms, grad, v->u);
        modulator_backward(c, N, tb, ms, dm, dms, dh, io->gms, io->gmf);
#pragma omp simd
        for (int j = 0; j < N; j++) { /* h = o tanh(c), c = f c_prev + i g */
            const real tc = tanhr(cc[j]);
            const real dcj = dc[j] + dh[j] * og[j] * (1 - tc * tc);
            da[j] = dcj * gg[j] * (ig[j] * (1 - ig[j]));
            da[N + j] = dcj * cp[j] * (fg[j] * (1 - fg[j]));
            da[2 * N + j] = (dg[j] + dcj * ig[j]) * (1 - gg[j] * gg[j]);
            da[3 * N + j] = dh[j] * tc * (og[j] * (1 - og[j]));
            dc[j] = dcj * fg[j];
        }
        for (int i = 0; i < N; i++) { /* the ordinary gates' recurrent weights */
            const real *restrict wi = L->w + i * G4;
            real acc = 0;
#pragma omp simd reduction(+ : acc)
            for (int j = 0; j < 2 * N; j++) acc += wi[j] * da[j];
#pragma omp simd reduction(+ : acc)
            for (int j = 3 * N; j < 4 * N; j++) acc += wi[j] * da[j];
            dhp[i] += acc;
        }
        drive_backward(L, N, N, hp, Fb, da + 2 * N, L->w + 2 * N, G4, dhp, dF, grad);
    }
    if (is_start(c, s, t, b)) { /* h, c and the traces entering this step were reset */
        memset(dhp, 0, N * sizeof(real));
        if (c->cell == C_LSTM) memset(dc, 0, N * sizeof(real));
        memset(dF, 0, c->S * sizeof(real));
        if (dE) memset(dE, 0, c->S * sizeof(real));
    }
    memcpy(dh, dhp, N * sizeof(real));
}

#endif
