/* The layer table (model.h) for conv models: cuvae_layer_make's shapes, weight layouts, fan-in
 * and multiply-adds for both conv kinds; the layout of model.encoder / model.decoder (the mirror
 * included) against the parameter counts torch.nn gives the same modules; the MLP of model.hidden
 * unchanged; impossible shapes refused with the layer named. */
#include <math.h>
#include <string.h>

#include "config.h"
#include "model.h"
#include "tests_util.h"

static void test_layer_make(void)
{
    cuvae_layer l;
    cuvae_status st = {{0}};
    /* conv2d 3x9x7 -> 5 channels, k4 s2 p1: (9+2-4)/2+1 = 4, (7+2-4)/2+1 = 3 */
    CHECK(cuvae_layer_make(&l, CUVAE_LAYER_CONV2D, (cuvae_shape){3, 9, 7}, 5, 4, 2, 1,
                           CUVAE_ACT_RELU, &st) == 0);
    CHECK(l.out_shape.c == 5 && l.out_shape.h == 4 && l.out_shape.w == 3);
    CHECK(l.in == 189 && l.out == 60 && l.fan_in == 3 * 16);
    CHECK(l.w_ndim == 4 && l.w_shape[0] == 5 && l.w_shape[1] == 3 && l.w_shape[2] == 4 &&
          l.w_shape[3] == 4);
    CHECK(l.w_count == 240 && l.b_count == 5 && l.w == 0 && l.b == 240);
    CHECK(l.macs == 60.0 * 3 * 16);
    /* conv_transpose2d 4x3x5 -> 2 channels, k3 s2 p1: (3-1)2-2+3 = 5, (5-1)2-2+3 = 9; weight
     * [in, out, k, k], fan-in out*k*k (torch computes it from weight.size(1)) */
    CHECK(cuvae_layer_make(&l, CUVAE_LAYER_CONV_TRANSPOSE2D, (cuvae_shape){4, 3, 5}, 2, 3, 2, 1,
                           CUVAE_ACT_NONE, &st) == 0);
    CHECK(l.out_shape.c == 2 && l.out_shape.h == 5 && l.out_shape.w == 9);
    CHECK(l.w_shape[0] == 4 && l.w_shape[1] == 2 && l.fan_in == 2 * 9 && l.b_count == 2);
    CHECK(l.macs == 60.0 * 2 * 9);
    /* linear: out_c features, flat output */
    CHECK(cuvae_layer_make(&l, CUVAE_LAYER_LINEAR, (cuvae_shape){2, 3, 3}, 7, 0, 0, 0,
                           CUVAE_ACT_NONE, &st) == 0);
    CHECK(l.in == 18 && l.out == 7 && l.w_ndim == 2 && l.w_shape[0] == 7 && l.w_shape[1] == 18);
    /* refusals, with the sizes */
    CHECK(cuvae_layer_make(&l, CUVAE_LAYER_CONV2D, (cuvae_shape){1, 2, 2}, 4, 4, 2, 0,
                           CUVAE_ACT_NONE, &st) != 0);
    CHECK_MSG(st.msg, "conv2d k4 s2 p0: input 1x2x2 gives an output of 4x0x0");
    CHECK(cuvae_layer_make(&l, CUVAE_LAYER_CONV_TRANSPOSE2D, (cuvae_shape){1, 1, 1}, 4, 2, 1, 1,
                           CUVAE_ACT_NONE, &st) != 0);
    CHECK_MSG(st.msg, "conv_transpose2d k2 s1 p1: input 1x1x1 gives an output of 4x0x0");
    CHECK(cuvae_layer_make(&l, CUVAE_LAYER_CONV2D, (cuvae_shape){1, 8, 8}, 4, 3, 1, 3,
                           CUVAE_ACT_NONE, &st) != 0);
    CHECK_MSG(st.msg, "conv2d: kernel 3, stride 1, padding 3 (expected");
    CHECK(cuvae_layer_make(&l, CUVAE_LAYER_CONV2D, (cuvae_shape){1, 8, 8}, 0, 3, 1, 1,
                           CUVAE_ACT_NONE, &st) != 0);
    CHECK(cuvae_layer_make(&l, CUVAE_LAYER_CONV2D, (cuvae_shape){65536, 65536, 2}, 1, 1, 1, 0,
                           CUVAE_ACT_NONE, &st) != 0);
    CHECK_MSG(st.msg, "conv2d: input of shape 65536x65536x2");
    CHECK(cuvae_layer_make(&l, CUVAE_LAYER_CONV2D, (cuvae_shape){65536, 2, 2}, 65536, 3, 1, 1,
                           CUVAE_ACT_NONE, &st) != 0);
    CHECK_MSG(st.msg, "conv2d k3 s1 p1: a weight of 65536x65536x3x3 values (at most 2147483647)");
    CHECK(cuvae_layer_make(&l, CUVAE_LAYER_CONV_TRANSPOSE2D, (cuvae_shape){1, 30000, 30000}, 4, 64,
                           64, 0, CUVAE_ACT_NONE, &st) != 0);
}

static int layout(cuvae_model *m, const char *encoder, const char *decoder, const char *hidden,
                  int latent, cuvae_shape x, cuvae_status *st)
{
    cuvae_config c;
    cuvae_config_defaults(&c);
    char a[512];
    c.model.latent = latent;
    snprintf(a, sizeof a, "model.hidden=%s", hidden);
    CHECK(cuvae_config_override(&c, a, st) == 0);
    snprintf(a, sizeof a, "model.encoder=%s", encoder);
    CHECK(cuvae_config_override(&c, a, st) == 0);
    snprintf(a, sizeof a, "model.decoder=%s", decoder);
    CHECK(cuvae_config_override(&c, a, st) == 0);
    return cuvae_model_layout_shape(m, &c, x, st);
}

static void test_fashion_conv(void)
{
    cuvae_model m;
    cuvae_status st = {{0}};
    CHECK(layout(&m, "conv 32, conv 64, linear 256", "", "", 32, (cuvae_shape){1, 28, 28}, &st) ==
          0);
    CHECK(m.enc.n == 4 && m.dec.n == 4);
    static const cuvae_layer_kind enc[4] = {CUVAE_LAYER_CONV2D, CUVAE_LAYER_CONV2D,
                                            CUVAE_LAYER_LINEAR, CUVAE_LAYER_LINEAR};
    static const cuvae_layer_kind dec[4] = {CUVAE_LAYER_LINEAR, CUVAE_LAYER_LINEAR,
                                            CUVAE_LAYER_CONV_TRANSPOSE2D,
                                            CUVAE_LAYER_CONV_TRANSPOSE2D};
    static const int enc_out[4] = {32 * 14 * 14, 64 * 7 * 7, 256, 64};
    static const int dec_out[4] = {256, 3136, 32 * 14 * 14, 784};
    for (int i = 0; i < 4; i++) {
        CHECK(m.enc.layer[i].kind == enc[i] && m.enc.layer[i].out == enc_out[i]);
        CHECK(m.dec.layer[i].kind == dec[i] && m.dec.layer[i].out == dec_out[i]);
        CHECK(m.enc.layer[i].act == (i < 3 ? CUVAE_ACT_RELU : CUVAE_ACT_NONE));
        CHECK(m.dec.layer[i].act == (i < 3 ? CUVAE_ACT_RELU : CUVAE_ACT_NONE));
    }
    /* The decoder's linear output is seen as 64x7x7 by the transposed conv after it. */
    CHECK(m.dec.layer[1].out_shape.c == 64 && m.dec.layer[1].out_shape.h == 7);
    CHECK(m.dec.layer[2].in_shape.c == 64 && m.dec.layer[2].out_shape.c == 32);
    CHECK(cuvae_shape_equal(m.dec.layer[3].out_shape, (cuvae_shape){1, 28, 28}));
    /* sum(p.numel() for p in model.parameters()) of the same torch.nn modules */
    CHECK(m.n_params == 1700609);
    cuvae_tensor_info t[CUVAE_MAX_TENSORS];
    int n = cuvae_model_tensors(&m, t);
    CHECK(n == 16);
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        CHECK(t[i].offset == at);
        at += t[i].count;
    }
    CHECK(at == m.n_params);
    CHECK(!strcmp(t[12].name, "decoder.2.weight") && t[12].ndim == 4 && t[12].shape[0] == 64 &&
          t[12].shape[1] == 32);
    /* torch's init bound 1/sqrt(fan_in): fan_in of conv_transpose2d is out * k * k */
    CHECK(m.dec.layer[3].fan_in == 16 && m.dec.layer[2].fan_in == 32 * 16);
    CHECK(m.enc.layer[1].fan_in == 32 * 16);
    /* multiply-adds: conv 64x7x7 outputs of 32*16 products each */
    CHECK(m.enc.layer[1].macs == 3136.0 * 512);
    CHECK(m.dec.layer[2].macs == 3136.0 * 512);

    /* The large VAE: four convs 64 -> 4, the mirror back. */
    CHECK(layout(&m, "conv 32, conv 64, conv 128, conv 256, linear 256", "", "", 10,
                 (cuvae_shape){1, 64, 64}, &st) == 0);
    CHECK(m.enc.layer[3].out_shape.c == 256 && m.enc.layer[3].out_shape.h == 4);
    CHECK(m.dec.n == 6 && cuvae_shape_equal(m.dec.layer[5].out_shape, (cuvae_shape){1, 64, 64}));
    /* Colour, and stride 1. */
    CHECK(layout(&m, "conv 8 k3 s1 p1, conv 16", "", "", 4, (cuvae_shape){3, 32, 32}, &st) == 0);
    CHECK(cuvae_shape_equal(m.dec.layer[m.dec.n - 1].out_shape, (cuvae_shape){3, 32, 32}));
    CHECK(m.dec.layer[m.dec.n - 1].kernel == 3 && m.dec.layer[m.dec.n - 1].stride == 1);
}

static void test_mlp_unchanged(void)
{
    cuvae_model m;
    cuvae_status st = {{0}};
    CHECK(layout(&m, "", "", "512,256", 32, (cuvae_shape){1, 28, 28}, &st) == 0);
    CHECK(m.n_params == 1091920 && m.enc.n == 3 && m.dec.n == 3);
    for (int i = 0; i < 3; i++) {
        CHECK(m.enc.layer[i].kind == CUVAE_LAYER_LINEAR &&
              m.dec.layer[i].kind == CUVAE_LAYER_LINEAR);
        CHECK(m.enc.layer[i].out_shape.h == 1 && m.dec.layer[i].out_shape.h == 1);
    }
    CHECK(m.dec.layer[2].out == 784 && m.dec.layer[0].in == 32);
    /* The same MLP written as model.encoder: the same table. */
    cuvae_model m2;
    CHECK(layout(&m2, "linear 512, linear 256", "", "", 32, (cuvae_shape){1, 28, 28}, &st) == 0);
    CHECK(memcmp(&m, &m2, sizeof m) == 0);
}

static void test_refusals(void)
{
    cuvae_model m;
    cuvae_status st = {{0}};
    cuvae_shape x = {1, 28, 28};
    CHECK(layout(&m, "conv 8, conv 8, conv 8, conv 8, conv 8", "", "", 4, x, &st) != 0);
    CHECK_MSG(st.msg, "model.encoder layer 5 (conv 8): conv2d k4 s2 p1: input 8x1x1 gives an "
                      "output of 8x0x0");
    CHECK(layout(&m, "conv 8 k3", "", "", 4, x, &st) != 0);
    CHECK_MSG(st.msg, "model.decoder: the mirror of encoder layer 1 (conv2d k3 s2 p1, 1x28x28 -> "
                      "8x14x14) gives 1x27x27, not 1x28x28");
    CHECK(layout(&m, "conv 8", "linear 100", "", 4, x, &st) != 0);
    CHECK_MSG(st.msg, "model.decoder: the last layer gives 100x1x1 (100 values), the data is "
                      "1x28x28");
    CHECK(layout(&m, "conv 8", "linear 8x14x14, convt 3", "", 4, x, &st) != 0);
    CHECK_MSG(st.msg, "the last layer gives 3x28x28 (2352 values), the data is 1x28x28");
    CHECK(layout(&m, "conv 8", "linear 8x14x14, convt 1", "", 4, x, &st) == 0);
    CHECK(layout(&m, "conv 8", "convt 1 k2 s1 p1", "", 4, x, &st) != 0);
    CHECK_MSG(st.msg,
              "model.decoder layer 1 (convt 1 k2 s1): conv_transpose2d k2 s1 p1: input 4x1x1");
    CHECK(layout(&m, "linear 64, conv 8", "", "", 4, x, &st) != 0);
    CHECK_MSG(st.msg, "model.encoder layer 2 (conv 8): conv2d k4 s2 p1: input 64x1x1");
    CHECK(layout(&m, "convt 2", "", "", 4, x, &st) != 0);
    CHECK_MSG(st.msg, "the encoder's conv_transpose2d (layer 1) has no mirror");
    CHECK(layout(&m,
                 "linear 1,linear 1,linear 1,linear 1,linear 1,linear 1,linear 1,linear 1,"
                 "linear 1",
                 "", "", 4, x, &st) != 0);
    CHECK_MSG(st.msg, "model.encoder: at most 8 layers");
}

int main(void)
{
    test_layer_make();
    test_fashion_conv();
    test_mlp_unchanged();
    test_refusals();
    return cuvae_test_finish("model");
}
