package bench

import (
	"bufio"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// chart is a line chart with linear axes, drawn as a standalone SVG file.
// The bench draws two kinds (a latency percentile curve and throughput
// over time); a chart this small is written here rather than bringing a
// plotting library and its font and image dependencies into the module.
type chart struct {
	Title, XLabel, YLabel string
	Lines                 []line
	// XTicks, when set, replace the automatic ticks of the x axis, and
	// their range is the axis's range.
	XTicks []tick
}

// line is one series of points, drawn in order.
type line struct {
	Label string
	X, Y  []float64
}

// tick is a labelled position on an axis.
type tick struct {
	At    float64
	Label string
}

// The chart's geometry, in SVG user units (pixels).
const (
	chartWidth   = 760
	chartHeight  = 440
	marginLeft   = 80
	marginRight  = 40
	marginTop    = 60
	marginBottom = 56
)

// palette colours the lines in order.
var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"}

// writeSVG draws c.
func (c *chart) writeSVG(w io.Writer) error {
	bw := bufio.NewWriter(w)
	xmin, xmax, ymax := math.Inf(1), math.Inf(-1), 0.0
	for _, l := range c.Lines {
		if len(l.X) != len(l.Y) {
			return fmt.Errorf("chart %q: line %q has %d x and %d y values", c.Title, l.Label, len(l.X), len(l.Y))
		}
		for i := range l.X {
			if !finite(l.X[i]) || !finite(l.Y[i]) {
				return fmt.Errorf("chart %q: line %q: point %d is (%v, %v)", c.Title, l.Label, i, l.X[i], l.Y[i])
			}
			xmin, xmax = math.Min(xmin, l.X[i]), math.Max(xmax, l.X[i])
			ymax = math.Max(ymax, l.Y[i])
		}
	}
	xticks := c.XTicks
	if len(xticks) > 0 {
		xmin, xmax = xticks[0].At, xticks[len(xticks)-1].At
	} else {
		if math.IsInf(xmin, 0) {
			xmin, xmax = 0, 1
		}
		xticks = niceTicks(xmin, xmax, 8)
		xmin, xmax = math.Min(xmin, xticks[0].At), math.Max(xmax, xticks[len(xticks)-1].At)
	}
	if xmax <= xmin {
		xmax = xmin + 1
	}
	yticks := niceTicks(0, ymax, 6)
	ytop := yticks[len(yticks)-1].At
	if ytop <= 0 {
		ytop = 1
	}
	pw := float64(chartWidth - marginLeft - marginRight)
	ph := float64(chartHeight - marginTop - marginBottom)
	px := func(x float64) float64 { return marginLeft + (x-xmin)/(xmax-xmin)*pw }
	py := func(y float64) float64 { return marginTop + ph - y/ytop*ph }

	fmt.Fprintf(bw, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		chartWidth, chartHeight, chartWidth, chartHeight)
	fmt.Fprintf(bw, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(bw, `<text x="%d" y="24" text-anchor="middle" font-size="15">%s</text>`+"\n", chartWidth/2, esc(c.Title))
	// Grid and ticks.
	for _, t := range yticks {
		y := py(t.At)
		fmt.Fprintf(bw, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#e0e0e0"/>`+"\n", marginLeft, y, chartWidth-marginRight, y)
		fmt.Fprintf(bw, `<text x="%d" y="%.1f" text-anchor="end" dominant-baseline="middle">%s</text>`+"\n", marginLeft-6, y, esc(t.Label))
	}
	for _, t := range xticks {
		x := px(t.At)
		fmt.Fprintf(bw, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#e0e0e0"/>`+"\n", x, marginTop, x, chartHeight-marginBottom)
		fmt.Fprintf(bw, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x, chartHeight-marginBottom+18, esc(t.Label))
	}
	// Axes and their labels.
	fmt.Fprintf(bw, `<path d="M%d %d V%d H%d" fill="none" stroke="black"/>`+"\n", marginLeft, marginTop, chartHeight-marginBottom, chartWidth-marginRight)
	fmt.Fprintf(bw, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", marginLeft+pw/2, chartHeight-12, esc(c.XLabel))
	fmt.Fprintf(bw, `<text x="18" y="%.1f" text-anchor="middle" transform="rotate(-90 18 %.1f)">%s</text>`+"\n", marginTop+ph/2, marginTop+ph/2, esc(c.YLabel))
	// Lines, then their legend.
	for i, l := range c.Lines {
		var pts strings.Builder
		for j := range l.X {
			if j > 0 {
				pts.WriteByte(' ')
			}
			fmt.Fprintf(&pts, "%.1f,%.1f", px(l.X[j]), py(l.Y[j]))
		}
		fmt.Fprintf(bw, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"><title>%s</title></polyline>`+"\n",
			palette[i%len(palette)], pts.String(), esc(l.Label))
	}
	// The legend is one row between the title and the plot, each entry
	// as wide as its label (about 7 units a character).
	lx := marginLeft
	for i, l := range c.Lines {
		if l.Label == "" {
			continue
		}
		const y = 42
		fmt.Fprintf(bw, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"/>`+"\n", lx, y, lx+20, y, palette[i%len(palette)])
		fmt.Fprintf(bw, `<text x="%d" y="%d" dominant-baseline="middle">%s</text>`+"\n", lx+26, y, esc(l.Label))
		lx += 26 + 7*len([]rune(l.Label)) + 24
	}
	fmt.Fprintln(bw, `</svg>`)
	return bw.Flush()
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// esc escapes s for SVG text and attribute values.
func esc(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

// niceTicks returns about n ticks from at most lo up to at least hi, spaced
// 1, 2 or 5 times a power of ten.
func niceTicks(lo, hi float64, n int) []tick {
	if hi < lo {
		lo, hi = hi, lo
	}
	if hi == lo {
		hi = lo + 1
	}
	raw := (hi - lo) / float64(max(n, 1))
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	first := math.Floor(lo/step) * step
	var ticks []tick
	for i := 0; ; i++ {
		v := first + float64(i)*step
		// Round away the float error of adding steps.
		v = math.Round(v/step) * step
		ticks = append(ticks, tick{At: v, Label: tickLabel(v, step)})
		if v >= hi-step*1e-9 {
			break
		}
	}
	return ticks
}

// tickLabel formats v with as many decimals as step needs, and large
// values with k or M.
func tickLabel(v, step float64) string {
	switch {
	case v == 0:
		return "0"
	case math.Abs(v) >= 1e6 && step >= 1e5:
		return strconv.FormatFloat(v/1e6, 'f', -1, 64) + "M"
	case math.Abs(v) >= 1e3 && step >= 1e3:
		return strconv.FormatFloat(v/1e3, 'f', -1, 64) + "k"
	}
	decimals := max(0, int(-math.Floor(math.Log10(step))))
	r, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'f', decimals, 64), 64)
	return strconv.FormatFloat(r, 'f', -1, 64)
}
