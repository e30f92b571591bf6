/* Bare-metal driver: calls CMSIS-NN int8 kernels between markers.
 * Marker protocol: write kernel id (1..N) to MARKER before the call, 0 after.
 * Results (status, checksum) written to result[] for cross-checking against a host build. */
#include <stdint.h>
#include <string.h>
#include "arm_nnfunctions.h"

#ifdef HOST_BUILD
#include <stdio.h>
static volatile uint32_t marker_sink;
#define MARKER (marker_sink)
#else
#define MARKER (*(volatile uint32_t *)0x40000000u)
#endif

#define BEGIN(id) do { __asm__ volatile("" ::: "memory"); MARKER = (id); __asm__ volatile("" ::: "memory"); } while (0)
#define END()     do { __asm__ volatile("" ::: "memory"); MARKER = 0; __asm__ volatile("" ::: "memory"); } while (0)

/* ---------- buffers ---------- */
static int8_t in_a[16 * 16 * 32];
static int8_t in_b[16 * 16 * 32];
static int8_t w_conv3[16 * 3 * 3 * 16];
static int8_t w_pw[32 * 32];
static int8_t w_dw[3 * 3 * 32];
static int8_t w_fc[128 * 256];
static int32_t bias[256];
static int32_t mult[256];
static int32_t shift[256];
static int8_t out[16 * 16 * 64];
static int8_t scratch[32768] __attribute__((aligned(8)));

uint32_t result[64]; /* [2*k]=status, [2*k+1]=checksum of output */

static uint32_t lcg = 12345u;
static int8_t rnd8(void) { lcg = lcg * 1664525u + 1013904223u; return (int8_t)(lcg >> 24); }
static void fill(int8_t *p, int n) { for (int i = 0; i < n; i++) p[i] = rnd8(); }
static uint32_t csum(const int8_t *p, int n) { uint32_t h = 2166136261u; for (int i = 0; i < n; i++) { h ^= (uint8_t)p[i]; h *= 16777619u; } return h; }

static void record(int k, int status, const int8_t *o, int n) { result[2 * k] = (uint32_t)status; result[2 * k + 1] = csum(o, n); }

int main(void)
{
    fill(in_a, sizeof in_a); fill(in_b, sizeof in_b);
    fill(w_conv3, sizeof w_conv3); fill(w_pw, sizeof w_pw); fill(w_dw, sizeof w_dw); fill(w_fc, sizeof w_fc);
    for (int i = 0; i < 256; i++) { bias[i] = (int32_t)(rnd8()) * 37; mult[i] = 1500000000 + (rnd8() << 16); shift[i] = -8 - (i & 3); }

    cmsis_nn_context ctx = { scratch, sizeof scratch };
    cmsis_nn_per_channel_quant_params pcq = { mult, shift };
    int st;

    /* 1: arm_convolve_s8 3x3, 16x16x16 -> 16x16x16, pad 1 stride 1 */
    {
        cmsis_nn_conv_params cp = { .input_offset = 3, .output_offset = -2, .stride = {1, 1}, .padding = {1, 1}, .dilation = {1, 1}, .activation = {-128, 127} };
        cmsis_nn_dims id = {1, 16, 16, 16}, fd = {16, 3, 3, 16}, bd = {1, 1, 1, 16}, od = {1, 16, 16, 16};
        BEGIN(1);
        st = arm_convolve_s8(&ctx, &cp, &pcq, &id, in_a, &fd, w_conv3, &bd, bias, NULL, &od, out);
        END();
        record(1, st, out, 16 * 16 * 16);
        /* 2: same via wrapper */
        BEGIN(2);
        st = arm_convolve_wrapper_s8(&ctx, &cp, &pcq, &id, in_a, &fd, w_conv3, &bd, bias, &od, out);
        END();
        record(2, st, out, 16 * 16 * 16);
    }
    /* 3: 1x1 pointwise, 16x16x32 -> 16x16x32 */
    {
        cmsis_nn_conv_params cp = { .input_offset = 3, .output_offset = -2, .stride = {1, 1}, .padding = {0, 0}, .dilation = {1, 1}, .activation = {-128, 127} };
        cmsis_nn_dims id = {1, 16, 16, 32}, fd = {32, 1, 1, 32}, bd = {1, 1, 1, 32}, od = {1, 16, 16, 32};
        BEGIN(3);
        st = arm_convolve_1x1_s8_fast(&ctx, &cp, &pcq, &id, in_a, &fd, w_pw, &bd, bias, &od, out);
        END();
        record(3, st, out, 16 * 16 * 32);
        BEGIN(4);
        st = arm_convolve_wrapper_s8(&ctx, &cp, &pcq, &id, in_a, &fd, w_pw, &bd, bias, &od, out);
        END();
        record(4, st, out, 16 * 16 * 32);
    }
    /* 5/6: depthwise 3x3, 32 ch, 16x16, pad 1 stride 1 */
    {
        cmsis_nn_dw_conv_params dp = { .input_offset = 3, .output_offset = -2, .ch_mult = 1, .stride = {1, 1}, .padding = {1, 1}, .dilation = {1, 1}, .activation = {-128, 127} };
        cmsis_nn_dims id = {1, 16, 16, 32}, fd = {1, 3, 3, 32}, bd = {1, 1, 1, 32}, od = {1, 16, 16, 32};
        BEGIN(5);
        st = arm_depthwise_conv_wrapper_s8(&ctx, &dp, &pcq, &id, in_a, &fd, w_dw, &bd, bias, &od, out);
        END();
        record(5, st, out, 16 * 16 * 32);
        BEGIN(6);
        st = arm_depthwise_conv_s8_opt(&ctx, &dp, &pcq, &id, in_a, &fd, w_dw, &bd, bias, &od, out);
        END();
        record(6, st, out, 16 * 16 * 32);
    }
    /* 7: fully connected 256 -> 128 */
    {
        cmsis_nn_fc_params fp = { .input_offset = 3, .filter_offset = 0, .output_offset = -2, .activation = {-128, 127} };
        cmsis_nn_per_tensor_quant_params tq = { 1500000000, -9 };
        cmsis_nn_dims id = {1, 1, 1, 256}, fd = {256, 1, 1, 128}, bd = {1, 1, 1, 128}, od = {1, 1, 1, 128};
        cmsis_nn_context fctx = { scratch, arm_fully_connected_s8_get_buffer_size(&fd) };
        BEGIN(7);
        st = arm_fully_connected_s8(&fctx, &fp, &tq, &id, in_a, &fd, w_fc, &bd, bias, &od, out);
        END();
        record(7, st, out, 128);
    }
    /* 8: elementwise add, 4096 elements */
    {
        BEGIN(8);
        st = arm_elementwise_add_s8(in_a, in_b, 5, 1073741824, 0, -3, 1300000000, -1, 20, out, -4, 1200000000, -19, -128, 127, 4096);
        END();
        record(8, st, out, 4096);
    }
    /* 9/10: avg / max pool 2x2 stride 2, 16x16x32 -> 8x8x32 */
    {
        cmsis_nn_pool_params pp = { .stride = {2, 2}, .padding = {0, 0}, .activation = {-128, 127} };
        cmsis_nn_dims id = {1, 16, 16, 32}, fd = {1, 2, 2, 1}, od = {1, 8, 8, 32};
        cmsis_nn_context pctx = { scratch, arm_avgpool_s8_get_buffer_size(8, 32) };
        BEGIN(9);
        st = arm_avgpool_s8(&pctx, &pp, &id, in_a, &fd, &od, out);
        END();
        record(9, st, out, 8 * 8 * 32);
        BEGIN(10);
        st = arm_max_pool_s8(&pctx, &pp, &id, in_a, &fd, &od, out);
        END();
        record(10, st, out, 8 * 8 * 32);
    }
    /* 11: softmax 1 row x 10 ; 12: softmax 16 rows x 128 */
    {
        BEGIN(11);
        arm_softmax_s8(in_a, 1, 10, 1245184000, 23, -248, out);
        END();
        record(11, 0, out, 10);
        BEGIN(12);
        arm_softmax_s8(in_a, 16, 128, 1245184000, 23, -248, out);
        END();
        record(12, 0, out, 16 * 128);
    }

    /* ---- shape variants (same kernels, different MAC/output ratio) ---- */
    {   /* 13: arm_convolve_s8 3x3, 8x8x32 -> 8x8x32, pad 1 */
        cmsis_nn_conv_params cp = { .input_offset = 3, .output_offset = -2, .stride = {1, 1}, .padding = {1, 1}, .dilation = {1, 1}, .activation = {-128, 127} };
        cmsis_nn_dims id = {1, 8, 8, 32}, fd = {32, 3, 3, 32}, bd = {1, 1, 1, 32}, od = {1, 8, 8, 32};
        BEGIN(13);
        st = arm_convolve_s8(&ctx, &cp, &pcq, &id, in_a, &fd, w_fc, &bd, bias, NULL, &od, out);
        END();
        record(13, st, out, 8 * 8 * 32);
    }
    {   /* 14: 1x1 fast, 8x8x64 -> 8x8x64 */
        cmsis_nn_conv_params cp = { .input_offset = 3, .output_offset = -2, .stride = {1, 1}, .padding = {0, 0}, .dilation = {1, 1}, .activation = {-128, 127} };
        cmsis_nn_dims id = {1, 8, 8, 64}, fd = {64, 1, 1, 64}, bd = {1, 1, 1, 64}, od = {1, 8, 8, 64};
        BEGIN(14);
        st = arm_convolve_1x1_s8_fast(&ctx, &cp, &pcq, &id, in_a, &fd, w_fc, &bd, bias, &od, out);
        END();
        record(14, st, out, 8 * 8 * 64);
    }
    {   /* 15: FC 512 -> 64 */
        cmsis_nn_fc_params fp = { .input_offset = 3, .filter_offset = 0, .output_offset = -2, .activation = {-128, 127} };
        cmsis_nn_per_tensor_quant_params tq = { 1500000000, -9 };
        cmsis_nn_dims id = {1, 1, 1, 512}, fd = {512, 1, 1, 64}, bd = {1, 1, 1, 64}, od = {1, 1, 1, 64};
        cmsis_nn_context fctx = { scratch, arm_fully_connected_s8_get_buffer_size(&fd) };
        BEGIN(15);
        st = arm_fully_connected_s8(&fctx, &fp, &tq, &id, in_a, &fd, w_fc, &bd, bias, &od, out);
        END();
        record(15, st, out, 64);
    }
    {   /* 16: depthwise 3x3 wrapper, 8x8x64 */
        cmsis_nn_dw_conv_params dp = { .input_offset = 3, .output_offset = -2, .ch_mult = 1, .stride = {1, 1}, .padding = {1, 1}, .dilation = {1, 1}, .activation = {-128, 127} };
        cmsis_nn_dims id = {1, 8, 8, 64}, fd = {1, 3, 3, 64}, bd = {1, 1, 1, 64}, od = {1, 8, 8, 64};
        BEGIN(16);
        st = arm_depthwise_conv_wrapper_s8(&ctx, &dp, &pcq, &id, in_a, &fd, w_fc, &bd, bias, &od, out);
        END();
        record(16, st, out, 8 * 8 * 64);
    }
#ifdef HOST_BUILD
    for (int k = 1; k <= 16; k++) printf("%d %u %08x\n", k, result[2 * k], result[2 * k + 1]);
#endif
    return 0;
}

#ifndef HOST_BUILD
/* Entry used by the emulator: Python sets SP and jumps to _start; _start returns into halt(). */
void halt(void) __attribute__((noinline, used));
void halt(void) { for (;;) __asm__ volatile("nop"); }
void _start(void) __attribute__((noreturn, used));
void _start(void) { main(); halt(); for (;;) ; }
#endif
