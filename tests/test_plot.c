/* test_plot.c - a loss-curve PNG is written atomically, reads back as an
 * image of the requested size, shows the series colours, and a bad path
 * fails with one line and no file. */
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

TEST_MAIN(T(test_loss_curve_png))
