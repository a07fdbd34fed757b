/* cmd_train.c - `train`: Cellpose training (CPnet or ViT), bit-exact and resumable.
 *
 *   train --deterministic --seed 42 --config configs/cyto.yaml --data DIR --out RUN_DIR
 *
 * What one run does (Cellpose v3 train_seg, CELLPOSE.md section 4, with the
 * deliberate differences of DESIGN.md: Philox instead of MT19937, our own
 * bilinear warp instead of OpenCV's fixed-point one):
 *   1. read DIR (images + NAME_masks.tif), select channels, normalize 1-99%,
 *      labels -> flows (train/flows.c), per-image diameters; images with
 *      fewer than min_train_masks masks are dropped with a warning;
 *   2. the net: random init from --seed (or --init MODEL, or --resume RUN);
 *   3. per epoch e: lr = schedule[e]; order = Philox permutation (seed,
 *      ORDER stream, e); batches of batch_size: augment each sample (Philox,
 *      counter (e, position)), forward (training BN), Cellpose loss,
 *      backward, AdamW or SGD; train loss = mean over images;
 *      test loss (eval mode, fixed augmentation) at epochs 5 and e % 10 == 0;
 *   4. after every epoch: manifest.json (loss, lr, parameter SHA-256) and
 *      loss.png; every save_every epochs and at the end: checkpoint.bin
 *      (weights + optimizer + epoch) and model.bin, written atomically.
 * Every value depends only on (data, config, seed): never on threads,
 * timing or how often the run was interrupted.
 * The net is a CPnet (Cellpose v3) or the Cellpose-SAM ViT (net.type vit,
 * Cellpose v4 defaults from the config), both behind nets/net.h: the same
 * data, outputs, manifest and checkpoints. The ViT takes in_chans channels:
 * our 2 Cellpose channels followed by zeros (net.h says when this equals
 * v4's input); its crops are exactly net.img_size (the config checks
 * train.bsize), and its layer drop is keyed by (seed, optimizer step,
 * sample, block), so it too resumes to the same bits.
 * --trace adds RUN_DIR/trace.jsonl: per optimizer step the SHA-256 of every
 * layer's output, the loss, every gradient and the parameters after the step
 * (nets/cpnet_trace.h), for `compare run_a run_b`. It reads memory the step
 * already holds and changes no value (CPnet only; a ViT run refuses it). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "augment.h"
#include "checkpoint.h"
#include "cli.h"
#include "config.h"
#include "cpnet.h"
#include "cpnet_trace.h"
#include "dataset.h"
#include "eval/plot.h"
#include "flows.h"
#include "manifest.h"
#include "net.h"
#include "philox.h"
#include "progress.h"
#include "sha256.h"
#include "transforms.h"

#define ORDER_STREAM 0x6f726431u /* "ord1": epoch order */
#define TEST_EPOCH 0xffffffffu   /* augmentation counter used for test batches (fixed) */

/* mkdir -p */
static int make_dirs(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0777) != 0 && errno != EEXIST) return -1;
            *p = '/';
        }
    return mkdir(buf, 0777) != 0 && errno != EEXIST ? -1 : 0;
}

typedef struct {
    int n;
    int64_t *h, *w;
    float **x;    /* [2, h, w] normalized */
    float **lbl;  /* [3, h, w]: cellprob, dY, dX */
    float *diam;  /* per image, clamped >= 5 */
} Prepared;

/* Channels [2, H, W] from a planar [c, H, W] image: Cellpose v3's
 * convert_image for training (see tfm_select_channels for the rules). */
static int select_planar(float *out, const DatasetItem *it, const int ch[2], CpErr *e) {
    int64_t hw = it->h * it->w;
    if (ch[0] < 0 || ch[0] > it->c || ch[1] < 0 || ch[1] > it->c)
        return cp_fail(e, "%s: channels [%d, %d] requested, the image has %d", it->image_path, ch[0], ch[1], it->c);
    if (it->c == 1 || ch[0] == 0) {
        for (int64_t i = 0; i < hw; i++) {
            float s = it->image[i];
            for (int c = 1; c < it->c; c++) s += it->image[c * hw + i];
            out[i] = it->c == 1 ? s : s / (float)it->c;
        }
        memset(out + hw, 0, sizeof(float) * (size_t)hw);
        return CP_OK;
    }
    memcpy(out, it->image + (ch[0] - 1) * hw, sizeof(float) * (size_t)hw);
    if (ch[1] > 0) memcpy(out + hw, it->image + (ch[1] - 1) * hw, sizeof(float) * (size_t)hw);
    else memset(out + hw, 0, sizeof(float) * (size_t)hw);
    return CP_OK;
}

static void prepared_free(Prepared *p) {
    for (int i = 0; i < p->n; i++) cp_free(p->x[i]), cp_free(p->lbl[i]);
    cp_free(p->x), cp_free(p->lbl), cp_free(p->h), cp_free(p->w), cp_free(p->diam);
    memset(p, 0, sizeof *p);
}

/* Dataset -> normalized 2-channel images, flow targets, diameters. */
static int prepare(Prepared *p, const Dataset *d, const TrainConfig *tc, int min_masks, const CpCtx *ctx, CpErr *e) {
    memset(p, 0, sizeof *p);
    p->x = cp_calloc((size_t)d->n, sizeof(float *));
    p->lbl = cp_calloc((size_t)d->n, sizeof(float *));
    p->h = cp_calloc((size_t)d->n, sizeof(int64_t));
    p->w = cp_calloc((size_t)d->n, sizeof(int64_t));
    p->diam = cp_calloc((size_t)d->n, sizeof(float));
    int ch[2] = {tc->n_channels ? tc->channels[0] : 0, tc->n_channels ? tc->channels[1] : 0};
    for (int i = 0; i < d->n; i++) {
        const DatasetItem *it = &d->items[i];
        int64_t hw = it->h * it->w;
        uint32_t *lab = cp_malloc(sizeof(uint32_t) * (size_t)hw);
        memcpy(lab, it->labels, sizeof(uint32_t) * (size_t)hw);
        int nmask = flows_renumber(lab, it->h, it->w);
        if (nmask < min_masks) {
            fprintf(stderr, "train: warning: %s has %d masks (< min_train_masks %d), not used\n", it->image_path,
                    nmask, min_masks);
            cp_free(lab);
            continue;
        }
        int k = p->n;
        p->h[k] = it->h, p->w[k] = it->w;
        p->x[k] = cp_malloc(sizeof(float) * (size_t)(2 * hw));
        p->lbl[k] = cp_malloc(sizeof(float) * (size_t)(3 * hw));
        p->n++;
        double dm = flows_diameter(lab, it->h, it->w);
        p->diam[k] = (float)(dm < 5.0 ? 5.0 : dm);
        uint32_t *scratch = cp_malloc(sizeof(uint32_t) * (size_t)tfm_normalize_scratch(it->h, it->w));
        int rc = select_planar(p->x[k], it, ch, e);
        if (rc == CP_OK && tc->normalize)
            rc = tfm_normalize_img(p->x[k], 2, it->h, it->w, 1.0, 99.0, scratch, NULL, NULL, ctx, it->image_path, e);
        if (rc == CP_OK) rc = flows_from_labels(p->lbl[k], lab, it->h, it->w, nmask, ctx, e);
        cp_free(scratch);
        cp_free(lab);
        if (rc != CP_OK) return CP_EFAIL;
    }
    return CP_OK;
}

typedef struct {
    CpConfig cfg;
    const char *data, *test_data, *out, *init, *resume;
    uint32_t seed;
    int trace; /* --trace */
    CpCtx ctx;
} Args;

/* Augment the samples order[k0..k1) of `epoch` into X [nb,Cin,B,B] (the
 * 2 image channels first; channels 2..Cin-1 are never written and stay 0),
 * Y [nb,3,B,B]. */
static void make_batch(float *X, float *Y, const Prepared *p, const uint32_t *order, int k0, int k1, uint32_t epoch,
                       const Args *a, float diam_mean, int cin) {
    const TrainConfig *tc = &a->cfg.train;
    int B = tc->bsize;
    CpRngKey key = cp_rng_key(a->seed, AUG_STREAM);
    for (int k = k0; k < k1; k++) {
        int i = (int)order[k];
        AugParams ap;
        float rsc = tc->rescale ? p->diam[i] / diam_mean : 1.0f;
        aug_draw(&ap, key, epoch, (uint32_t)k, p->h[i], p->w[i], B, rsc, (float)tc->scale_range, 1);
        aug_apply(X + (int64_t)(k - k0) * cin * B * B, Y + (int64_t)(k - k0) * 3 * B * B, p->x[i], p->lbl[i], 2,
                  p->h[i], p->w[i], B, &ap, &a->ctx);
    }
}

/* The images of one epoch, in order: a Philox permutation when every image
 * is used once (Cellpose: np.random.permutation), else uniform draws with
 * replacement (np.random.choice). */
static void epoch_order(uint32_t *order, int nimg, int n, uint32_t seed, uint32_t epoch) {
    CpRngKey key = cp_rng_key(seed, ORDER_STREAM);
    if (nimg == n) {
        cp_rng_permutation(order, (uint32_t)n, key, epoch, 0);
        return;
    }
    for (int k = 0; k < nimg; k++) order[k] = cp_rng_below(key, epoch, 1, (uint32_t)k, (uint32_t)n);
}

typedef struct {
    Net net;
    TrainState st;
    float *X, *Y, *dy;
    int64_t start_epoch;
    FILE *trace; /* --trace: RUN_DIR/trace.jsonl, else NULL */
    char trace_path[4200];
} Run;

/* One pass over `nimg` samples; training updates the net, evaluation does
 * not (eval-mode BatchNorm, fixed augmentation). Returns the mean loss. */
static double run_epoch(Run *r, const Prepared *p, const Args *a, int64_t epoch, double lr, int training, CpErr *e) {
    const TrainConfig *tc = &a->cfg.train;
    int B = tc->bsize, bs = tc->batch_size;
    int nimg = training ? (tc->nimg_per_epoch > 0 ? tc->nimg_per_epoch : p->n) : p->n;
    uint32_t *order = cp_malloc(sizeof(uint32_t) * (size_t)nimg);
    epoch_order(order, nimg, p->n, a->seed, training ? (uint32_t)epoch : TEST_EPOCH);
    double total = 0;
    for (int k = 0; k < nimg; k += bs) {
        int nb = k + bs <= nimg ? bs : nimg - k;
        if (net_plan(&r->net, nb, B, B, 1, e) != CP_OK) {
            cp_free(order);
            return NAN;
        }
        make_batch(r->X, r->Y, p, order, k, k + nb, training ? (uint32_t)epoch : TEST_EPOCH, a,
                   r->net.diam_mean, r->net.in_chans);
        float loss = 0;
        int rc;
        if (training) {
            net_set_step(&r->net, a->seed, (uint64_t)r->st.step); /* ViT layer drop of this step */
            rc = net_loss_backward(&r->net, r->X, r->Y, r->dy, &loss, &a->ctx, e);
        } else {
            const float *y = net_forward(&r->net, r->X, 0, &a->ctx, e);
            if (y) loss = cellpose_loss_cpu(NULL, y, r->Y, nb, (int64_t)B * B, &a->ctx);
            rc = y ? CP_OK : CP_EFAIL;
        }
        if (rc == CP_OK && isnan(loss))
            rc = cp_fail(e, "%s: the loss became NaN at epoch %lld (learning rate %g too high?)", a->data,
                         (long long)epoch, lr);
        if (rc != CP_OK) {
            cp_free(order);
            return NAN;
        }
        if (training) {
            r->st.step++;
            if (tc->optimizer == OPT_SGD)
                sgd_step_cpu(r->net.params, r->st.m, r->net.grads, r->net.nparams, lr, tc->momentum,
                             tc->weight_decay, r->st.step, &a->ctx);
            else
                adamw_step_cpu(r->net.params, r->st.m, r->st.v, r->net.grads, r->net.nparams, lr, 0.9, 0.999, 1e-8,
                               tc->weight_decay, r->st.step, &a->ctx);
            if (r->trace &&
                cpnet_trace_step(r->trace, &r->net.cp, r->st.step, epoch, loss, r->trace_path, e) != CP_OK) {
                cp_free(order);
                return NAN;
            }
        }
        total += (double)loss * nb; /* Cellpose: loss.item() * len(batch), / nimg per epoch */
    }
    cp_free(order);
    return total / nimg;
}

/* checkpoint.bin after every epoch (a kill loses at most one epoch); model.bin
 * every save_every epochs and at the end. */
static int save_outputs(Run *r, const Args *a, int64_t epochs_done, int final, CpErr *e) {
    char path[4200], ep[32], hex[65], seed[16];
    net_hash(&r->net, hex);
    snprintf(ep, sizeof ep, "%lld", (long long)epochs_done);
    snprintf(seed, sizeof seed, "%u", a->seed);
    const char *meta[] = {"net", net_type_name(&r->net), "epochs", ep, "seed", seed, "params_sha256", hex};
    r->st.epoch = epochs_done;
    snprintf(path, sizeof path, "%s/checkpoint.bin", a->out);
    if (ckpt_save_net(path, &r->net, &r->st, meta, 4, e) != CP_OK) return CP_EFAIL;
    if (final) {
        snprintf(path, sizeof path, "%s/model.bin", a->out);
        if (net_save(&r->net, path, meta, 4, e) != CP_OK) return CP_EFAIL;
    }
    return CP_OK;
}

static int write_report(const Manifest *man, const Args *a, CpErr *e) {
    char path[4200];
    snprintf(path, sizeof path, "%s/manifest.json", a->out);
    if (manifest_write(man, path, e) != CP_OK) return CP_EFAIL;
    size_t n = json_array_size(man->epochs);
    double *x = cp_malloc(sizeof(double) * (n + 1)), *tr = cp_malloc(sizeof(double) * (n + 1)),
           *te = cp_malloc(sizeof(double) * (n + 1));
    for (size_t i = 0; i < n; i++) {
        json_t *ep = json_array_get(man->epochs, i), *t = json_object_get(ep, "test_loss");
        x[i] = (double)json_integer_value(json_object_get(ep, "epoch"));
        tr[i] = json_real_value(json_object_get(ep, "train_loss"));
        te[i] = json_is_real(t) ? json_real_value(t) : NAN;
    }
    PlotSeries s[2] = {{"train loss", x, tr, (int)n}, {"test loss", x, te, (int)n}};
    PlotSpec sp = {"cellpose.c training loss", "epoch", "loss (flow MSE/2 + BCE)", 800, 500, 0};
    snprintf(path, sizeof path, "%s/loss.png", a->out);
    int rc = plot_lines_png(path, &sp, s, 2, e);
    cp_free(x), cp_free(tr), cp_free(te);
    return rc;
}

static CliOpt opts[] = {
    {"config", "FILE", "YAML config (configs/cyto.yaml, configs/tiny.yaml, ...)", NULL},
    {"data", "DIR", "training folder: images with NAME_masks.tif labels", NULL},
    {"test-data", "DIR", "optional test folder, same layout (test loss at epochs 5, 10, 20, ...)", NULL},
    {"out", "DIR", "run folder: model.bin, checkpoint.bin, manifest.json, loss.png", NULL},
    {"seed", "N", "seed for initialisation, sampling and augmentation (0..4294967295, default 0)", NULL},
    {"deterministic", NULL, "use a deterministic backend (cpu or cuda), refuse cudnn", NULL},
    {"backend", "NAME", "cpu | cuda | cudnn (this build: cpu)", NULL},
    {"threads", "N", "CPU threads (results do not depend on it; default: all)", NULL},
    {"init", "MODEL", "start from these weights (model.bin) instead of a random init", NULL},
    {"resume", "RUN_DIR", "continue an interrupted run from RUN_DIR/checkpoint.bin", NULL},
    {"n-epochs", "N", "override train.n_epochs", NULL},
    {"learning-rate", "LR", "override train.learning_rate", NULL},
    {"batch-size", "N", "override train.batch_size", NULL},
    {"weight-decay", "WD", "override train.weight_decay", NULL},
    {"optimizer", "NAME", "override train.optimizer (adamw | sgd)", NULL},
    {"trace", NULL, "write per-step SHA-256 of every layer's output and gradient to OUT/trace.jsonl (CPnet)", NULL},
};
#define NOPTS ((int)(sizeof opts / sizeof opts[0]))

static int parse_args(Args *a, CpErr *e) {
    memset(a, 0, sizeof *a);
    const char *cfg = cli_get(opts, NOPTS, "config");
    a->data = cli_get(opts, NOPTS, "data");
    a->test_data = cli_get(opts, NOPTS, "test-data");
    a->out = cli_get(opts, NOPTS, "out");
    a->init = cli_get(opts, NOPTS, "init");
    a->resume = cli_get(opts, NOPTS, "resume");
    if (a->resume && !a->out) a->out = a->resume;
    a->trace = cli_get(opts, NOPTS, "trace") != NULL;
    if (a->trace && a->resume) return cp_fail(e, "--trace starts with the run; it cannot be added on --resume");
    if (!cfg || !a->data || !a->out) return cp_fail(e, "--config, --data and --out are required (see --help)");
    if (config_load(&a->cfg, cfg, e) != CP_OK) return CP_EFAIL;
    static const char *const over[][2] = {{"n-epochs", "train.n_epochs"},         {"learning-rate", "train.learning_rate"},
                                          {"batch-size", "train.batch_size"},     {"weight-decay", "train.weight_decay"},
                                          {"optimizer", "train.optimizer"}};
    for (size_t i = 0; i < sizeof over / sizeof over[0]; i++) {
        const char *v = cli_get(opts, NOPTS, over[i][0]);
        if (v && config_set(&a->cfg, over[i][1], v, e) != CP_OK) return CP_EFAIL;
    }
    if (config_validate(&a->cfg, e) != CP_OK) return CP_EFAIL;
    if (a->cfg.net.type == NET_VIT && a->trace)
        return cp_fail(e, "%s: --trace records CPnet layers only; run the ViT without it", cfg);
    long seed = 0, threads = 0;
    if (cli_get_int(opts, NOPTS, "seed", 0, 4294967295L, &seed, e) != CP_OK ||
        cli_get_int(opts, NOPTS, "threads", 0, 4096, &threads, e) != CP_OK)
        return CP_EFAIL;
    CpBackend be = CP_BACKEND_CPU;
    const char *bs = cli_get(opts, NOPTS, "backend");
    if (bs && cp_backend_parse(bs, &be, e) != CP_OK) return CP_EFAIL;
    if (be == CP_BACKEND_CUDNN && cli_get(opts, NOPTS, "deterministic"))
        return cp_fail(e, "--deterministic refuses the cudnn backend (use cpu or cuda)");
    if (!cp_backend_available(be) || be != CP_BACKEND_CPU)
        return cp_fail(e, "backend %s is not available in this build (the CUDA backend is issue 8)", cp_backend_name(be));
    cp_ctx_init(&a->ctx, be, (int)threads, (uint32_t)seed);
    a->seed = (uint32_t)seed;
    return CP_OK;
}

static int start_run(Run *r, Args *a, const Prepared *p, Manifest *man, const Dataset *d, int argc, char **argv,
                     CpErr *e) {
    memset(r, 0, sizeof *r);
    if (net_create(&r->net, &a->cfg.net, cp_ops_cpu(), e) != CP_OK) return CP_EFAIL;
    if (r->net.in_chans < 2)
        return cp_fail(e, "%s: the net takes %d input channel(s); the data path feeds Cellpose's 2 (zero-padded "
                          "beyond), need >= 2", a->cfg.path, r->net.in_chans);
    cp_ctx_workspace(&a->ctx, net_workspace_bytes(&r->net)); /* ViT attention scratch, once */
    r->st.m = cp_calloc((size_t)r->net.nparams, sizeof(float));
    r->st.v = cp_calloc((size_t)r->net.nparams, sizeof(float));
    char path[4200];
    if (a->resume) {
        snprintf(path, sizeof path, "%s/checkpoint.bin", a->resume);
        if (ckpt_load_net(path, &r->net, &r->st, e) != CP_OK) return CP_EFAIL;
        snprintf(path, sizeof path, "%s/manifest.json", a->resume);
        if (manifest_read(man, path, e) != CP_OK) return CP_EFAIL;
        json_t *old = json_object_get(man->root, "config"), *now = config_to_json(&a->cfg);
        int same = json_equal(old, now);
        json_decref(now);
        if (!same) return cp_fail(e, "%s: the run was made with another config; resume with the same --config", path);
        if (json_integer_value(json_object_get(man->root, "seed")) != a->seed)
            return cp_fail(e, "%s: the run was made with another --seed", path);
        while ((int64_t)json_array_size(man->epochs) > r->st.epoch)
            json_array_remove(man->epochs, json_array_size(man->epochs) - 1);
        r->start_epoch = r->st.epoch;
        return CP_OK;
    }
    if (a->init) {
        if (net_load(&r->net, a->init, e) != CP_OK) return CP_EFAIL;
    } else {
        net_init_random(&r->net, a->seed);
    }
    double s = 0; /* Cellpose: net.diam_labels = mean of the training diameters */
    for (int i = 0; i < p->n; i++) s += p->diam[i];
    net_set_diam_labels(&r->net, (float)(s / p->n));
    manifest_init(man, &a->cfg, &a->ctx, argc, argv);
    for (int i = 0; i < d->n; i++) {
        manifest_add_input(man, d->items[i].image_path, d->items[i].image_sha256);
        manifest_add_input(man, d->items[i].mask_path, d->items[i].mask_sha256);
    }
    return CP_OK;
}

static int load_set(Dataset *d, Prepared *p, const char *dir, const Args *a, CpErr *e) {
    if (dataset_open(d, dir, "_masks", a->ctx.max_pixels, e) != CP_OK) return CP_EFAIL;
    if (prepare(p, d, &a->cfg.train, a->cfg.train.min_train_masks, &a->ctx, e) != CP_OK) return CP_EFAIL;
    if (p->n == 0)
        return cp_fail(e, "%s: no image has at least min_train_masks = %d masks", dir, a->cfg.train.min_train_masks);
    return CP_OK;
}

static int train(Args *a, int argc, char **argv, CpErr *e) {
    const TrainConfig *tc = &a->cfg.train;
    char path[4200];
    snprintf(path, sizeof path, "%s/manifest.json", a->out);
    struct stat sb;
    if (!a->resume && stat(path, &sb) == 0)
        return cp_fail(e, "%s: already holds a run; use --resume %s or another --out", a->out, a->out);
    Dataset d = {0}, dt = {0};
    Prepared p = {0}, pt = {0};
    Manifest man = {0};
    Run r = {0};
    double *lr = cp_calloc((size_t)tc->n_epochs, sizeof(double));
    int rc = load_set(&d, &p, a->data, a, e);
    if (rc == CP_OK && a->test_data) rc = load_set(&dt, &pt, a->test_data, a, e);
    if (rc == CP_OK) rc = tfm_lr_schedule(lr, tc->learning_rate, tc->n_epochs, 3, e);
    if (rc == CP_OK) {
        if (tc->n_epochs < 10)
            fprintf(stderr, "train: warning: n_epochs = %d < 10: the warm-up never reaches the learning rate, and "
                            "epoch 0 has lr 0 (Cellpose's schedule)\n", tc->n_epochs);
        config_print(&a->cfg, stderr);
    }
    if (rc == CP_OK) rc = start_run(&r, a, &p, &man, &d, argc, argv, e);
    /* only now, with the inputs and the net (--init, --resume) checked, does the run folder appear */
    if (rc == CP_OK && !a->resume && make_dirs(a->out) != 0)
        rc = cp_fail(e, "%s: cannot create: %s", a->out, strerror(errno));
    if (rc == CP_OK && a->trace) {
        snprintf(r.trace_path, sizeof r.trace_path, "%s/trace.jsonl", a->out);
        if (!(r.trace = fopen(r.trace_path, "w"))) rc = cp_fail(e, "%s: %s", r.trace_path, strerror(errno));
        manifest_set(&man, "trace", json_string("trace.jsonl"));
    }
    if (rc != CP_OK) goto done;
    int64_t B = tc->bsize, bs = tc->batch_size, cin = r.net.in_chans;
    r.X = cp_calloc((size_t)(bs * cin * B * B), sizeof(float)); /* channels >= 2 stay 0 */
    r.Y = cp_malloc(sizeof(float) * (size_t)(bs * 3 * B * B));
    r.dy = cp_malloc(sizeof(float) * (size_t)(bs * 3 * B * B));
    fprintf(stderr, "train: %d training images%s, %d epochs from epoch %lld, seed %u, %d threads\n", p.n,
            a->test_data ? " (+ test set)" : "", tc->n_epochs, (long long)r.start_epoch, a->seed, a->ctx.threads);
    int64_t nimg = tc->nimg_per_epoch > 0 ? tc->nimg_per_epoch : p.n; /* progress in images (images/s, ETA) */
    CpProgress pg;
    progress_init(&pg, "train", "img", (tc->n_epochs - r.start_epoch) * nimg);
    for (int64_t ep = r.start_epoch; ep < tc->n_epochs && rc == CP_OK; ep++) {
        double t0 = cp_time_sec();
        double loss = run_epoch(&r, &p, a, ep, lr[ep], 1, e);
        double tloss = -1;
        if (!isnan(loss) && a->test_data && (ep == 5 || ep % 10 == 0)) tloss = run_epoch(&r, &pt, a, ep, 0, 0, e);
        if (isnan(loss) || isnan(tloss)) {
            rc = CP_EFAIL;
            break;
        }
        char hex[65], tail[160];
        net_hash(&r.net, hex);
        manifest_add_epoch(&man, (int)ep, lr[ep], loss, tloss, hex, cp_time_sec() - t0);
        rc = write_report(&man, a, e);
        if (rc == CP_OK) rc = save_outputs(&r, a, ep + 1, ep + 1 == tc->n_epochs || (ep + 1) % tc->save_every == 0, e);
        snprintf(tail, sizeof tail, "epoch %lld loss %.4f%s lr %.2e params %.12s", (long long)ep, loss,
                 tloss >= 0 ? " (test)" : "", lr[ep], hex);
        progress_update(&pg, (ep + 1 - r.start_epoch) * nimg, tail);
    }
    if (rc == CP_OK) {
        char hex[65];
        net_hash(&r.net, hex);
        progress_end(&pg, (tc->n_epochs - r.start_epoch) * nimg, NULL);
        printf("%s/model.bin\nparams sha256 %s\n", a->out, hex);
    }
done:
    if (r.trace) fclose(r.trace);
    cp_free(lr), cp_free(r.X), cp_free(r.Y), cp_free(r.dy), cp_free(r.st.m), cp_free(r.st.v);
    net_free(&r.net);
    if (man.root) manifest_free(&man);
    prepared_free(&p), prepared_free(&pt);
    if (d.items) dataset_free(&d);
    if (dt.items) dataset_free(&dt);
    return rc;
}

int main(int argc, char **argv) {
    const char *pos[1];
    int npos = 0;
    int rc = cli_main_head("train", "train --deterministic --seed 42 --config configs/cyto.yaml --data DIR --out RUN_DIR",
                           "Train a Cellpose CPnet or Cellpose-SAM ViT bit-exactly: the same seed gives the same weights (SHA-256) on any "
                           "thread count, and --resume continues to the same bits.",
                           opts, NOPTS, argc, argv, pos, &npos, 0, 0);
    if (rc >= 0) return rc;
    Args a;
    CpErr e;
    if (parse_args(&a, &e) != CP_OK) {
        fprintf(stderr, "train: %s\n", e.msg);
        return 2;
    }
    rc = train(&a, argc, argv, &e);
    if (rc != CP_OK) fprintf(stderr, "train: %s\n", e.msg);
    cp_ctx_free(&a.ctx); /* the ViT's attention workspace */
    return rc != CP_OK ? 1 : 0;
}
