/* The operations the backends implement, in one table that both generic test programs expand (as
 * ggml's test-backend-ops lists its ops once):
 *   test_gradcheck.c  runs gradcheck_<op>() for every op with a backward (FD): the CPU twin's
 *                     backward against central finite differences of its forward;
 *   gpu_parity.cu     runs parity_<op>(ctx) for every op: the CUDA launchers against the C twins
 *                     on the same inputs, at the tolerances of tests_util.h.
 * A row names the op (what a failure reports) and whether it has a backward. Adding a row without
 * the functions it asks for does not compile, so no op goes untested on either side.
 *
 * X(op, FD)   a backward exists: a gradient check and a parity check
 * X(op, NONE) forward only (or no gradient to check): a parity check */
#ifndef CUVAE_OP_TABLE_H
#define CUVAE_OP_TABLE_H

#define CUVAE_TEST_OPS(X)                                                                          \
    X(philox_words, NONE)       /* cuvae_philox_words_forward: bit-exact */                        \
    X(normal_noise, NONE)       /* cuvae_normal_fill_forward */                                    \
    X(gather_scale, NONE)       /* cuvae_gather_forward, bytes / 255: bit-exact */                 \
    X(gather_binarize, NONE)    /* cuvae_gather_forward, dynamic binarization: bit-exact */        \
    X(linear, FD)               /* linear forward/backward, with and without ReLU */               \
    X(conv2d, FD)               /* conv2d forward/backward (model.h's layouts), awkward sizes */   \
    X(conv_transpose2d, FD)     /* conv_transpose2d forward/backward, awkward sizes */             \
    X(reparam_kl, FD)           /* reparameterization + KL, free bits off and on */                \
    X(likelihood_bernoulli, FD) /* -log p(x|z) on logits and its gradient */                       \
    X(likelihood_gaussian, FD)  /* -log p(x|z) on means and its gradient */                        \
    X(sum_squares, NONE)        /* the gradient norm's sum of squares */                           \
    X(adam, NONE)               /* Adam, with and without L2 weight decay */                       \
    X(adamw, NONE)              /* AdamW (decoupled weight decay) */                               \
    X(optimizer_step, NONE)     /* norm, clipping, skip of a non-finite step, update */

#endif
