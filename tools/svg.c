/* The bench's bar chart: one group of horizontal bars per row (ours, oneDNN's
 * when measured, the copy bandwidth of the same bytes), a GB/s axis with
 * gridlines, a legend and the device in the title. Plain SVG 1.1: no scripts,
 * no external fonts (generic sans-serif), a white background so that it reads
 * on light and dark pages. The background and legend keys are paths, so every
 * <rect> is a bar. */
#include "svg.h"
#include "tool.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

enum { BAR_H = 14, BAR_GAP = 3, GROUP_PAD = 14, PLOT_W = 560, TOP = 92 };

static const char *const colour_ours = "#1f77b4", *const colour_dnn = "#ff7f0e",
                  *const colour_copy = "#9e9e9e";

static int usable(double v) { return isfinite(v) && v > 0; }

/* Length of the well-formed UTF-8 sequence at p (2 to 4 bytes), or 0. */
static int utf8_len(const unsigned char *p) {
  int n = p[0] >= 0xc2 && p[0] <= 0xdf ? 2 : p[0] >= 0xe0 && p[0] <= 0xef ? 3
          : p[0] >= 0xf0 && p[0] <= 0xf4 ? 4 : 0;
  for (int i = 1; i < n; ++i)
    if ((p[i] & 0xc0) != 0x80) return 0;
  return n;
}

/* `s` as XML character data or attribute text: the five special characters
 * escaped, control characters and malformed UTF-8 bytes as '?'. */
static void put_escaped(FILE *f, const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p;) {
    switch (*p) {
    case '&': fputs("&amp;", f); break;
    case '<': fputs("&lt;", f); break;
    case '>': fputs("&gt;", f); break;
    case '"': fputs("&quot;", f); break;
    case '\'': fputs("&apos;", f); break;
    default:
      if (*p >= 0x80) {
        int n = utf8_len(p);
        if (n) {
          fwrite(p, 1, (size_t)n, f);
          p += n;
          continue;
        }
        fputc('?', f);
      } else {
        fputc(*p >= 0x20 && *p != 0x7f ? *p : '?', f);
      }
    }
    ++p;
  }
}

/* A tick step of 1, 2 or 5 times a power of ten giving at most about 6 ticks
 * up to vmax. */
static double tick_step(double vmax) {
  if (!usable(vmax)) return 0.2;
  double raw = vmax / 5.0, mag = pow(10.0, floor(log10(raw))), f = raw / mag;
  return (f <= 1.0 ? 1.0 : f <= 2.0 ? 2.0 : f <= 5.0 ? 5.0 : 10.0) * mag;
}

static void value_str(double v, char *buf, size_t n) {
  snprintf(buf, n, v >= 100.0 ? "%.0f" : v >= 10.0 ? "%.1f" : "%.2f", v);
}

static const char subtitle[] = "float32 softmax and log-softmax: effective GB/s (inputs read once, "
                               "outputs written once), higher is better";

static void draw(FILE *f, const char *device, const svg_row *rows, int n) {
  int ng = 0, dnn = 0;
  size_t label_len = 0;
  double vmax = 0.0;
  for (int i = 0; i < n; ++i) {
    const svg_row *r = &rows[i];
    if (!usable(r->gbps)) continue;
    ng++;
    dnn |= usable(r->onednn_gbps);
    label_len = strlen(r->label) > label_len ? strlen(r->label) : label_len;
    vmax = fmax(vmax, r->gbps);
    if (usable(r->onednn_gbps)) vmax = fmax(vmax, r->onednn_gbps);
    if (usable(r->copy_gbps)) vmax = fmax(vmax, r->copy_gbps);
  }
  const double step = tick_step(vmax);
  int nticks = (int)ceil(vmax / step - 1e-9);
  if (nticks < 1) nticks = 1;
  const double axmax = nticks * step;
  const int slots = 2 + dnn; /* ours, oneDNN, copy: one slot each per group */
  const int group_h = slots * BAR_H + (slots - 1) * BAR_GAP + GROUP_PAD;
  const int ml = 24 + 7 * (int)label_len; /* about 7 px a character at 12 px */
  const int plot_h = (ng ? ng : 1) * group_h;
  const int y_axis = TOP + plot_h;
  int width = ml + PLOT_W + 60;
  const int title_w = 40 + 9 * (int)(strlen(device) + 20), subtitle_w = 40 + 7 * (int)strlen(subtitle);
  if (title_w > width) width = title_w;
  if (subtitle_w > width) width = subtitle_w;
  const int height = y_axis + 52;

  fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
             "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%d\" height=\"%d\" "
             "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\">\n",
          width, height, width, height);
  fputs("<title>clsoftmax bench on ", f);
  put_escaped(f, device);
  fputs("</title>\n", f);
  fprintf(f, "<path d=\"M0 0H%dV%dH0Z\" fill=\"#ffffff\"/>\n", width, height);
  fputs("<text x=\"20\" y=\"28\" font-size=\"16\" font-weight=\"bold\" fill=\"#222\">clsoftmax bench on ", f);
  put_escaped(f, device);
  fputs("</text>\n", f);
  fprintf(f, "<text x=\"20\" y=\"48\" font-size=\"12\" fill=\"#555\">%s</text>\n", subtitle);

  /* Legend. */
  struct { const char *colour, *text; int on; } keys[3] = {
      {colour_ours, "clsoftmax", 1},
      {colour_dnn, "oneDNN (host CPU)", dnn},
      {colour_copy, "device copy of the same bytes", 1}};
  int lx = 20;
  for (int k = 0; k < 3; ++k) {
    if (!keys[k].on) continue;
    fprintf(f, "<path d=\"M%d 62h12v12h-12Z\" fill=\"%s\"/>\n", lx, keys[k].colour);
    fprintf(f, "<text x=\"%d\" y=\"72\" font-size=\"12\" fill=\"#222\">%s</text>\n", lx + 17, keys[k].text);
    lx += 17 + 7 * (int)strlen(keys[k].text) + 20;
  }

  /* Gridlines, ticks and the axis. */
  for (int t = 0; t <= nticks; ++t) {
    double x = ml + PLOT_W * (t * step) / axmax;
    fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"%s\" stroke-width=\"1\"/>\n", x,
            TOP - 4, x, y_axis + 4, t ? "#e0e0e0" : "#333333");
    fprintf(f, "<text x=\"%.1f\" y=\"%d\" font-size=\"11\" fill=\"#333\" text-anchor=\"middle\">%.6g</text>\n",
            x, y_axis + 18, t * step);
  }
  fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333333\" stroke-width=\"1\"/>\n", ml,
          y_axis, ml + PLOT_W, y_axis);
  fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"12\" fill=\"#333\" text-anchor=\"middle\">GB/s</text>\n",
          ml + PLOT_W / 2, y_axis + 38);
  if (!ng)
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"12\" fill=\"#555\">no float32 softmax rows</text>\n",
            ml + 10, TOP + group_h / 2);

  /* One group per row. */
  int g = 0;
  for (int i = 0; i < n; ++i) {
    const svg_row *r = &rows[i];
    if (!usable(r->gbps)) continue;
    const int gy = TOP + g * group_h + GROUP_PAD / 2;
    if (g) fprintf(f, "<line x1=\"20\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#f0f0f0\" stroke-width=\"1\"/>\n",
                   gy - GROUP_PAD / 2, ml + PLOT_W, gy - GROUP_PAD / 2);
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"12\" fill=\"#222\" text-anchor=\"end\">", ml - 8,
            gy + (group_h - GROUP_PAD) / 2 + 4);
    put_escaped(f, r->label);
    fputs("</text>\n", f);
    const double vals[3] = {r->gbps, dnn ? r->onednn_gbps : 0.0, r->copy_gbps};
    const char *const colours[3] = {colour_ours, colour_dnn, colour_copy};
    for (int k = 0, slot = 0; k < 3; ++k) {
      if (k == 1 && !dnn) continue;
      const int y = gy + slot++ * (BAR_H + BAR_GAP);
      if (!usable(vals[k])) continue;
      double w = PLOT_W * vals[k] / axmax;
      char v[32];
      value_str(vals[k], v, sizeof v);
      fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"%s\"/>\n", ml, y, w, BAR_H,
              colours[k]);
      fprintf(f, "<text x=\"%.1f\" y=\"%d\" font-size=\"10\" fill=\"#333\">%s</text>\n", ml + w + 4,
              y + BAR_H - 3, v);
    }
    g++;
  }
  fputs("</svg>\n", f);
}

int svg_write_bench(tool_out *o, const char *device, const svg_row *rows, int n) {
  char err[512];
  FILE *f = tool_out_file(o, err, sizeof err);
  int rc = f ? 0 : EXIT_OUTPUT;
  if (f) {
    draw(f, device ? device : "", rows, n);
    rc = tool_out_commit_file(o, f, err, sizeof err);
  }
  if (rc) {
    tool_out_abort(o);
    fprintf(stderr, "clsoftmax bench: %s\n", err);
  }
  return rc;
}
