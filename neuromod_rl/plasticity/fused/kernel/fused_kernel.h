/*
 * The C interface of the fused plastic-cell CPU kernel (forward.c, backward.c; the Python side is
 * neuromod_rl/plasticity/fused/cpu.py). The structs below are the one declaration of that interface;
 * cpu.py mirrors them field by field as ctypes Structures. The helpers here and in rules.h and
 * cells.h are static inline: each file gets its own copy, specialised by the compiler.
 *
 * A cell is a list of plastic layers (one plastic matrix and its rule each): the recurrent matrix of
 * the RNN and of the LSTM's candidate (one layer), or the stacked layers of the MLP cell. Layouts
 * (row-major, contiguous): xp [T,B,X] (the input projection, X = N for the RNN, 4N for the LSTM with
 * gate blocks i, f, g, o, the raw input for the MLP); H [T,B,N] the cell's output; AUX [T,B,aux] what
 * else a step keeps (LSTM: c, i, f, g, o; MLP: the outputs of the layers below the last); starts
 * [T,B] (uint8); a sequence's traces of all layers side by side in S numbers, layer l's [n_pre,n_post]
 * at f_off (F[b, f_off + i*n_post + j], i presynaptic, j postsynaptic), the same for E.
 */
#ifndef NEUROMOD_RL_FUSED_KERNEL_H
#define NEUROMOD_RL_FUSED_KERNEL_H

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef REAL real;

/* Rule, modulation, cell and activation codes come from the one table in fused/spec.py, as -D flags. */
#if !defined(R_NEUROMOD) || !defined(R_CLIPPED) || !defined(R_HEBBIAN) || !defined(R_RETRO) || !defined(R_OJA) || \
    !defined(R_ABCD) || !defined(M_NONE) || !defined(M_SCALAR) || !defined(M_FANOUT) || !defined(C_RNN) ||        \
    !defined(C_LSTM) || !defined(C_MLP) || !defined(A_TANH) || !defined(A_RELU) || !defined(A_IDENTITY)
#error "compile with the codes of neuromod_rl/plasticity/fused/spec.py (kernel_defines())"
#endif

/* -- the C interface (mirrored by cpu.py) -------------------------------------------------------- */
/* One plastic layer. Its gradients sit at g_off in a thread's block of G numbers: alpha (n_pre*n_post,
 * or n_post for a per-neuron vector), the scalar rate (1), then ABCD's A, B, C, D, eta (n_pre*n_post
 * each). w's row i starts at w + i*w_cols (the LSTM's w holds the gate blocks i, f, g, o). max_norm: the
 * layer is divided by its largest |F| after every update (ABCD). */
typedef struct {
    int n_pre, n_post, rule, alpha_full, act, max_norm;
    real clip, eta;
    int64_t f_off, g_off, w_cols;
    const real *w, *b, *alpha, *A, *Bc, *C, *D, *etas;
} layer;

typedef struct {
    int T, B, N, X, cell, mod, external, K, nthreads, n_layers;
    int64_t S, G;
    real bm;
    const real *wm, *wf, *bf, *F_init; /* F_init [S]: the traces at an episode start (NULL: zero) */
    const layer *layers;
} config;

/* Forward. In: xp, starts (or NULL), ext [T,B] (or NULL), h0 [B,N], c0 [B,N] (LSTM); in/out: F, E [B,S]
 * (E NULL unless the eligibility rule); out: H, AUX, MS [T,B], MF [T,B,N], F_ck/E_ck [ceil(T/K),B,S] (NULL
 * for a forward pass without backward, e.g. one inference step). */
typedef struct {
    const real *xp, *ext, *h0, *c0;
    const uint8_t *starts;
    real *F, *E, *H, *AUX, *MS, *MF, *F_ck, *E_ck;
} fwd_io;

/* Backward. In: gH [T,B,N] (or NULL), dh, dc [B,N] = dL/dh_T, dL/dc_T, dF/dE [B,S] = dL/dF_T, dL/dE_T.
 * Out (in place): dh = dL/dh0, dc = dL/dc0, dF = dL/dF0, dE = dL/dE0; gxp [T,B,X] = dL/dxp; gA [T,B,L*N]
 * = dL/d(pre-activation) of each MLP layer; gms [T,B] = dL/dM(t) (external) or dL/dz (learned head, z the
 * pre-tanh of M); gmf [T,B,N] = dL/dm (fan-out); grad [nthreads, G] per-thread sums, reduced by the caller. */
typedef struct {
    const uint8_t *starts;
    const real *xp, *h0, *c0, *H, *AUX, *MS, *F_ck, *E_ck, *gH;
    real *dh, *dc, *dF, *dE, *gxp, *gA, *gms, *gmf, *grad;
} bwd_io;

/* Both return 0, or 1 when scratch memory could not be allocated (the outputs are then incomplete). */
int plastic_forward(const config *c, const fwd_io *io);
int plastic_backward(const config *c, const bwd_io *io);

/* -- what a step reads: where the pre- and postsynaptic activity of a layer sit ------------------ */
typedef struct {
    const real *xp, *h0, *c0, *H, *AUX;
    const uint8_t *starts;
    const real *zeros; /* max(N, X) zeros */
} seqs;

#define ALWAYS_INLINE static inline __attribute__((always_inline))
#define LSTM_C 0 /* blocks of an LSTM step's AUX row */
#define LSTM_I 1
#define LSTM_F 2
#define LSTM_G 3
#define LSTM_O 4

ALWAYS_INLINE int aux_width(const config *c) {
    return c->cell == C_LSTM ? 5 * c->N : (c->cell == C_MLP ? (c->n_layers - 1) * c->N : 0);
}

ALWAYS_INLINE int is_start(const config *c, const seqs *s, int t, int b) {
    return s->starts && s->starts[(size_t)t * c->B + b];
}

/* The presynaptic activity of layer l at step t: the previous hidden state of the recurrent cells
 * (zero at an episode start), or the layer's input in the MLP. */
ALWAYS_INLINE const real *pre_of(const config *c, const int N, const seqs *s, int l, int t, int b) {
    const size_t tb = (size_t)t * c->B + b;
    if (c->cell == C_MLP) return l == 0 ? s->xp + tb * c->X : s->AUX + tb * aux_width(c) + (size_t)(l - 1) * N;
    if (is_start(c, s, t, b)) return s->zeros;
    return t == 0 ? s->h0 + (size_t)b * N : s->H + (tb - c->B) * N;
}

/* The postsynaptic activity of layer l at step t: h (RNN), the candidate g (LSTM), the layer's output (MLP). */
ALWAYS_INLINE const real *post_of(const config *c, const int N, const seqs *s, int l, int t, int b) {
    const size_t tb = (size_t)t * c->B + b;
    if (c->cell == C_LSTM) return s->AUX + tb * 5 * N + LSTM_G * N;
    if (c->cell == C_MLP && l < c->n_layers - 1) return s->AUX + tb * aux_width(c) + (size_t)l * N;
    return s->H + tb * N;
}

/* The LSTM's previous cell state c_{t-1} (zero at an episode start). */
ALWAYS_INLINE const real *prev_cell(const config *c, const int N, const seqs *s, int t, int b) {
    if (is_start(c, s, t, b)) return s->zeros;
    return t == 0 ? s->c0 + (size_t)b * N : s->AUX + ((size_t)(t - 1) * c->B + b) * 5 * N + LSTM_C * N;
}

/* Whether some layer renormalises its trace after every update (then no update can wait for the next
 * step's pass: the whole tile must be updated before the division). */
ALWAYS_INLINE int any_max_norm(const config *c) {
    for (int l = 0; l < c->n_layers; l++)
        if (c->layers[l].max_norm) return 1;
    return 0;
}

/* The smallest divisor of max_norm (as the reference's clamp_min). */
#define MAX_NORM_FLOOR ((real)1e-8)

/* Divide a layer's n trace entries by their largest magnitude (at least MAX_NORM_FLOOR), from src into
 * dst (which may be src). */
ALWAYS_INLINE void normalize_max(size_t n, const real *src, real *dst) {
    real top = 0;
    for (size_t k = 0; k < n; k++) {
        const real v = fabs(src[k]);
        top = v > top ? v : top;
    }
    const real s = top < MAX_NORM_FLOOR ? MAX_NORM_FLOOR : top;
    for (size_t k = 0; k < n; k++) dst[k] = src[k] / s;
}

/* The traces at an episode start. */
ALWAYS_INLINE void reset_traces(const config *c, real *F, real *E) {
    if (c->F_init) memcpy(F, c->F_init, c->S * sizeof(real));
    else memset(F, 0, c->S * sizeof(real));
    if (E) memset(E, 0, c->S * sizeof(real));
}

/* -- threads ------------------------------------------------------------------------------------- */
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
#define DISPATCH_N(N, CALL)         \
    switch (N) {                    \
        case 32: CALL(32); break;   \
        case 64: CALL(64); break;   \
        case 128: CALL(128); break; \
        case 256: CALL(256); break; \
        default: CALL(N); break;    \
    }

#endif
