/* test_plot.c - a loss-curve PNG is written atomically, reads back as an
 * image of the requested size, shows the series colours, and a bad path
 * fails with one line and no file. A heatmap shows the ramp's two ends where
 * the matrix holds its minimum and maximum and grey for NaN; histograms draw
 * one panel per distribution with bars whose area follows the counts. */
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "eval/plot.h"
#include "harness.h"
#include "image.h"

TEST(test_loss_curve_png) {
    double x[50], a[50], b[50];
    for (int i = 0; i < 50; i++) x[i] = i, a[i] = 2.0 * exp(-i / 15.0) + 0.1, b[i] = i % 10 == 5 ? a[i] + 0.2 : NAN;
    PlotSeries s[2] = {{"train loss", x, a, 50}, {"test loss", x, b, 50}};
    PlotSpec sp = {"Training loss (test)", "epoch", "loss", 640, 400, 0};
    const char *out = getenv("CP_TEST_OUT");
    char path[512];
    snprintf(path, sizeof path, "%s/loss_curve_test.png", out && out[0] ? out : "/tmp");
    CpErr e;
    CHECKF(plot_lines_png(path, &sp, s, 2, &e) == CP_OK, "%s", e.msg);
    Image img;
    CHECKF(image_read(&img, path, 0, INT64_MAX, &e) == CP_OK, "%s", e.msg);
    CHECK(img.w == 640 && img.h == 400 && img.c >= 3);
    int64_t blue = 0, black = 0, red = 0;
    const uint8_t *p = img.data;
    for (int64_t i = 0; i < img.h * img.w; i++) {
        const uint8_t *q = p + i * img.c;
        blue += q[2] > 150 && q[0] < 80;
        black += q[0] < 40 && q[1] < 40 && q[2] < 40;
        red += q[0] > 180 && q[1] < 80 && q[2] < 80;
    }
    printf("  %s: %lld blue (train series), %lld red (test points), %lld black (axes, text) pixels\n", path,
           (long long)blue, (long long)red, (long long)black);
    CHECK(blue > 300 && black > 500 && red > 5 * 20); /* 5 markers of ~38 px + the legend line */
    image_free(&img);
    CHECK(plot_lines_png("/nonexistent_dir_cp/x.png", &sp, s, 2, &e) == CP_EFAIL && strstr(e.msg, "/nonexistent"));
    CHECK(access("/nonexistent_dir_cp/x.png", F_OK) != 0);
}

static void out_path(char *path, size_t n, const char *name) {
    const char *out = getenv("CP_TEST_OUT");
    snprintf(path, n, "%s/%s", out && out[0] ? out : "/tmp", name);
}

static const uint8_t *px(const Image *img, int x, int y) { return img->data + ((int64_t)y * img->w + x) * img->c; }

TEST(test_heatmap_png) {
    /* 3 x 4: min 0 at (0,0), max 1 at (2,3), NaN at (1,2); fixed size so cell centres are known */
    double v[12] = {0, 0.2, 0.3, 0.4, 0.5, 0.6, NAN, 0.7, 0.8, 0.9, 0.95, 1};
    const char *rl[3] = {"model a", "model b", "model c"}, *cl[4] = {"w", "x", "y", "z"};
    HeatSpec sp = {"Heatmap (test)", "column", "row", "value", 0, 0, 0, 0, 0};
    char path[512];
    out_path(path, sizeof path, "heatmap_test.png");
    CpErr e;
    CHECKF(plot_heatmap_png(path, &sp, v, 3, 4, rl, cl, &e) == CP_OK, "%s", e.msg);
    Image img;
    CHECKF(image_read(&img, path, 0, INT64_MAX, &e) == CP_OK, "%s", e.msg);
    /* find the cell grid: scan the middle row of pixels for dark purple (min) and yellow (max) */
    int64_t purple = 0, yellow = 0, grey = 0;
    for (int64_t i = 0; i < (int64_t)img.h * img.w; i++) {
        const uint8_t *q = img.data + i * img.c;
        purple += q[0] > 55 && q[0] < 80 && q[1] < 10 && q[2] > 70 && q[2] < 95;
        yellow += q[0] > 240 && q[1] > 220 && q[2] < 50;
        grey += q[0] == 153 && q[1] == 153 && q[2] == 153;
    }
    printf("  %s: %lldx%lld, %lld min-colour, %lld max-colour, %lld NaN-grey pixels\n", path, (long long)img.w, (long long)img.h,
           (long long)purple, (long long)yellow, (long long)grey);
    /* each cell is >= 16x16 px: min and max cells plus the colour bar ends, the NaN cell */
    CHECK(purple > 16 * 16 && yellow > 16 * 16 && grey > 16 * 16);
    /* the min cell is left of and above the max cell */
    int64_t px_min = -1, px_max = -1;
    for (int y = 0; y < img.h && (px_min < 0 || px_max < 0); y++)
        for (int x = 0; x < img.w - 120; x++) { /* the colour bar sits in the right 120 px */
            const uint8_t *q = px(&img, x, y);
            if (px_min < 0 && q[0] > 55 && q[0] < 80 && q[1] < 10 && q[2] > 70 && q[2] < 95) px_min = (int64_t)y * img.w + x;
            if (px_max < 0 && q[0] > 240 && q[1] > 220 && q[2] < 50) px_max = (int64_t)y * img.w + x;
        }
    CHECK(px_min >= 0 && px_max >= 0 && px_min / img.w < px_max / img.w);
    image_free(&img);
    sp.annotate = 1, sp.vmin = 0, sp.vmax = 2; /* fixed range: 1.0 is mid-ramp, no yellow left */
    CHECKF(plot_heatmap_png(path, &sp, v, 3, 4, NULL, NULL, &e) == CP_OK, "%s", e.msg);
    CHECKF(image_read(&img, path, 0, INT64_MAX, &e) == CP_OK, "%s", e.msg);
    int64_t yellow2 = 0;
    for (int64_t i = 0; i < (int64_t)img.h * img.w; i++) {
        const uint8_t *q = img.data + i * img.c;
        yellow2 += q[0] > 240 && q[1] > 220 && q[2] < 50;
    }
    CHECK(yellow2 < 16 * 16); /* only the colour bar's top */
    image_free(&img);
    CHECK(plot_heatmap_png("/nonexistent_dir_cp/h.png", &sp, v, 3, 4, rl, cl, &e) == CP_EFAIL &&
          strstr(e.msg, "/nonexistent"));
    CHECK(access("/nonexistent_dir_cp/h.png", F_OK) != 0);
}

TEST(test_histograms_png) {
    /* two panels: a uniform ramp (flat bars) and a spike (one tall bar); fixed 10 bins */
    enum { N = 1000 };
    double a[N], b[N];
    for (int i = 0; i < N; i++) a[i] = i / (double)N, b[i] = i < 900 ? 0.5 : i / (double)N;
    HistSeries s[2] = {{"uniform", a, N}, {"spike", b, N}};
    HistSpec sp = {"Histograms (test)", "weight", 10, 2, 300, 200, 0};
    char path[512];
    out_path(path, sizeof path, "histograms_test.png");
    CpErr e;
    CHECKF(plot_histograms_png(path, &sp, s, 2, &e) == CP_OK, "%s", e.msg);
    Image img;
    CHECKF(image_read(&img, path, 0, INT64_MAX, &e) == CP_OK, "%s", e.msg);
    CHECK(img.w == 2 * 300 + 20 && img.h == 40 + 200 + 10);
    /* blue bar pixels per panel: the uniform panel's bars fill its whole data box
     * (every bin at the max count); the spike panel's are mostly one bin */
    int64_t blue[2] = {0, 0};
    for (int y = 0; y < img.h; y++)
        for (int x = 0; x < img.w; x++) {
            const uint8_t *q = px(&img, x, y);
            if (q[2] > 150 && q[0] < 80) blue[x < 10 + 300 ? 0 : 1]++;
        }
    printf("  %s: %lld / %lld bar pixels (uniform / spike)\n", path, (long long)blue[0], (long long)blue[1]);
    CHECK(blue[0] > 4 * blue[1] && blue[1] > 200);
    image_free(&img);
    CHECK(plot_histograms_png(path, &sp, s, 0, &e) == CP_EFAIL);
}

TEST_MAIN(T(test_loss_curve_png), T(test_heatmap_png), T(test_histograms_png))
