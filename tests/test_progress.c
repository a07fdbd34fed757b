/* test_progress.c - the progress line carries label, count, percentage, rate
 * and ETA computed from the elapsed time, and the caller's tail. */
#include <string.h>

#include "harness.h"
#include "progress.h"

TEST(test_format) {
    CpProgress p;
    progress_init(&p, "train", "img", 400);
    char buf[512];
    /* 100 of 400 after 50 s: 2 img/s, 150 s (2:30) left */
    progress_format(&p, 100, p.t0 + 50.0, "loss 0.1234", buf, sizeof buf);
    CHECKF(strstr(buf, "train [") == buf, "%s", buf);
    CHECKF(strstr(buf, "100/400") && strstr(buf, " 25%"), "%s", buf);
    CHECKF(strstr(buf, "2.00 img/s"), "%s", buf);
    CHECKF(strstr(buf, "0:50 elapsed") && strstr(buf, "ETA 2:30"), "%s", buf);
    CHECKF(strstr(buf, "| loss 0.1234"), "%s", buf);
    progress_format(&p, 0, p.t0 + 7200.0, NULL, buf, sizeof buf);
    CHECKF(strstr(buf, "2:00:00 elapsed") && strstr(buf, "ETA ?"), "%s", buf);
    CpProgress q;
    progress_init(&q, "infer", "tile", 0); /* unknown total: no bar, no ETA */
    progress_format(&q, 30, q.t0 + 10.0, NULL, buf, sizeof buf);
    CHECKF(strstr(buf, "infer 30 | 3.00 tile/s") && !strstr(buf, "ETA"), "%s", buf);
}

TEST_MAIN(T(test_format))
