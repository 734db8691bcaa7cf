package bench

import (
	"fmt"
	"html"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// WritePlots writes SVG charts of the report's scenarios to dir, creating
// it, and returns the names of the files written: latency distributions
// as CDF lines, costs as bars, and scaling curves.
func (r *Report) WritePlots(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("write plots: %w", err)
	}
	files := map[string]string{}
	for _, p := range r.Propagation {
		c := &lineChart{
			title:  fmt.Sprintf("Revocation propagation to %d verifiers (%s), %d revocations: CDF", p.Verifiers, p.Mode, p.Revocations),
			xLabel: "latency (log)", yLabel: "fraction of samples", logX: true, xFmt: durTick, yFmt: pctTick,
		}
		c.add("Herald: revoke returned → refused (refused before: at the left edge)", cdfPoints(p.HeraldAfterReturn))
		c.add("Herald: revoke called → refused", cdfPoints(p.Herald))
		c.add("raw JetStream: publish called → received", cdfPoints(p.RawFanOut))
		files["propagation-"+p.Mode+".svg"] = svgDoc(chartW, chartH, c.render(0, 0, chartW, chartH))
	}
	if v := r.Verify; v != nil {
		bc := &barChart{title: "Cost per call (log scale): token checks in process, and a Redis round trip", fmtV: func(ns float64) string { return fmtNs(ns) }}
		for g, a := range v.Algorithms {
			bc.add(a.Algorithm+" golang-jwt parse+verify", a.Raw.NsPerOp, g)
			bc.add(a.Algorithm+" Herald Verify, uncached", a.Uncached.NsPerOp, g)
			bc.add(a.Algorithm+" Herald Verify, cached", a.Cached.NsPerOp, g)
		}
		if b := r.Baseline; b != nil {
			bc.add("denylist check (7 lookups)", b.DenylistCheck.NsPerOp, len(v.Algorithms))
			bc.add("Redis MGET round trip", b.RedisRoundTrip.NsPerOp, len(v.Algorithms)+1)
		}
		files["verify.svg"] = svgDoc(chartW, bc.height(), bc.render(0, 0, chartW))
	}
	if b := r.Baseline; b != nil {
		lat := &lineChart{title: fmt.Sprintf("Request latency under the same load (%d clients): CDF", b.Clients),
			xLabel: "latency (log)", yLabel: "fraction of requests", logX: true, xFmt: durTick, yFmt: pctTick}
		delay := &lineChart{title: "Revocation delay, until a polling client sees the refusal: CDF",
			xLabel: "delay (log)", yLabel: "fraction of revocations", logX: true, xFmt: durTick, yFmt: pctTick}
		for _, d := range b.Designs {
			lat.add(fmt.Sprintf("%s (%s req/s)", d.Name, fmtRate(d.Load.PerSecond)), cdfPoints(d.Load.Latency))
			delay.add(d.Name, cdfPoints(d.Delay))
		}
		files["baseline-latency.svg"] = svgDoc(chartW, chartH, lat.render(0, 0, chartW, chartH))
		files["baseline-delay.svg"] = svgDoc(chartW, chartH, delay.render(0, 0, chartW, chartH))
	}
	if s := r.Scale; s != nil && len(s.Points) > 0 {
		count := func(v float64) string { return fmtCount(int(v + 0.5)) }
		catchUp := &lineChart{title: "Fresh verifier catch-up time", xLabel: "active revocations", logX: true, logY: true, xFmt: count, yFmt: durTick}
		mem := &lineChart{title: "Verifier memory", xLabel: "active revocations", logX: true, logY: true, xFmt: count, yFmt: mibTick}
		lookup := &lineChart{title: "Lookup latency p99", xLabel: "active revocations", logX: true, logY: true, xFmt: count, yFmt: durTick}
		stream := &lineChart{title: "HERALD stream size", xLabel: "active revocations", logX: true, logY: true, xFmt: count, yFmt: mibTick}
		var in, proc, rss, peak, heap, check, verify, bytes []point
		for _, pt := range s.Points {
			x := float64(pt.Revocations)
			in = append(in, point{x, float64(pt.CatchUp)})
			if pt.Process != nil {
				proc = append(proc, point{x, float64(pt.Process.CatchUp)})
				rss = append(rss, point{x, mib(pt.Process.RSS)})
				peak = append(peak, point{x, mib(pt.Process.Peak)})
			}
			if pt.HeapGrowth > 0 {
				heap = append(heap, point{x, mib(uint64(pt.HeapGrowth))})
			}
			check = append(check, point{x, float64(pt.DenylistCheck.Latency.P99)})
			verify = append(verify, point{x, float64(pt.VerifyCached.Latency.P99)})
			bytes = append(bytes, point{x, mib(pt.StreamBytes)})
		}
		catchUp.add("in process", in)
		catchUp.add("process, exec → ready", proc)
		mem.add("process RSS", rss)
		mem.add("process peak RSS", peak)
		mem.add("Go heap growth, in process", heap)
		lookup.add("denylist check (7 lookups)", check)
		lookup.add("cached Verify", verify)
		stream.add("bytes", bytes)
		const pw, ph = chartW / 2, chartH
		body := catchUp.render(0, 0, pw, ph) + mem.render(pw, 0, pw, ph) + lookup.render(0, ph, pw, ph) + stream.render(pw, ph, pw, ph)
		files["scale.svg"] = svgDoc(chartW, 2*ph, body)
	}
	if is := r.Issue; is != nil {
		bc := &barChart{title: fmt.Sprintf("Operations per second, %d concurrent callers (log scale)", is.Workers), fmtV: fmtRate}
		bc.add("CreateSession (synced, events acknowledged)", is.Sessions.PerSecond, 0)
		for _, s := range is.Sign {
			bc.add("raw "+s.Algorithm+" signing", s.Rate.PerSecond, 1)
		}
		bc.add("raw publish of 2 acknowledged events", is.Publish.PerSecond, 2)
		if is.Refresh.N > 0 {
			bc.add("refresh (HTTP, shared bucket)", is.Refresh.PerSecond, 0)
		}
		if is.SyncedWrite.N > 0 {
			bc.add("single-writer synced 4 KiB write", is.SyncedWrite.PerSecond, 2)
		}
		files["issue.svg"] = svgDoc(chartW, bc.height(), bc.render(0, 0, chartW))
	}
	var names []string
	for name, svg := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(svg), 0o644); err != nil {
			return nil, fmt.Errorf("write plots: %w", err)
		}
		names = append(names, name)
	}
	return names, nil
}

// Chart geometry, in SVG user units.
const (
	chartW                             = 900
	chartH                             = 420
	marginL, marginR, marginT, marginB = 90.0, 40.0, 40.0, 50.0
)

// palette colours series and bar groups.
var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"}

func svgDoc(w, h float64, body string) string {
	return fmt.Sprintf(`<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+
		"\n"+`<rect width="100%%" height="100%%" fill="white"/>`+"\n%s</svg>\n", w, h, w, h, body)
}

type point struct{ x, y float64 }

type series struct {
	name   string
	points []point
}

// lineChart draws series of points, each axis linear or logarithmic.
type lineChart struct {
	title, xLabel, yLabel string
	logX, logY            bool
	xFmt, yFmt            func(float64) string
	series                []series
}

// add adds a series; an empty one is left out.
func (c *lineChart) add(name string, pts []point) {
	if len(pts) > 0 {
		c.series = append(c.series, series{name, pts})
	}
}

// cdfPoints returns a summary's CDF as points (latency in ns, fraction).
func cdfPoints(s Summary) []point {
	pts := make([]point, 0, len(s.CDF))
	for _, q := range s.CDF {
		pts = append(pts, point{float64(q.D), q.Q})
	}
	return pts
}

// axis maps data values to pixels along one dimension.
type axis struct {
	lo, hi   float64 // data range (log10 of it when log)
	log      bool
	from, to float64 // pixels
}

func newAxis(vals []float64, log bool, from, to float64) axis {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range vals {
		if log && v <= 0 {
			continue
		}
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	a := axis{log: log, from: from, to: to}
	switch {
	case math.IsInf(lo, 0):
		a.lo, a.hi = 0, 1
	case log:
		a.lo, a.hi = math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
		if a.hi == a.lo {
			a.hi++
		}
	default:
		step := niceStep((hi - math.Min(lo, 0)) / 5)
		a.lo, a.hi = math.Min(0, math.Floor(lo/step)*step), math.Ceil(hi/step)*step
		if a.hi == a.lo {
			a.hi = a.lo + 1
		}
	}
	return a
}

// pos returns the pixel of v; values a log axis cannot show go to its start.
func (a axis) pos(v float64) float64 {
	if a.log {
		if v <= 0 {
			v = math.Pow(10, a.lo)
		}
		v = math.Log10(v)
	}
	return a.from + (v-a.lo)/(a.hi-a.lo)*(a.to-a.from)
}

// ticks returns the values to mark: decades (with 2 and 5 when few) on a
// log axis, nice steps on a linear one.
func (a axis) ticks() []float64 {
	var ts []float64
	if a.log {
		decades := a.hi - a.lo
		for e := a.lo; e <= a.hi; e++ {
			base := math.Pow(10, e)
			ts = append(ts, base)
			if decades <= 3 && e < a.hi {
				ts = append(ts, 2*base, 5*base)
			}
		}
		return ts
	}
	step := niceStep((a.hi - a.lo) / 5)
	for v := a.lo; v <= a.hi+step/1e6; v += step {
		ts = append(ts, v)
	}
	return ts
}

// niceStep rounds a step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

// render draws the chart in the box at (x0, y0) of size w × h.
func (c *lineChart) render(x0, y0, w, h float64) string {
	var b strings.Builder
	var xs, ys []float64
	for _, s := range c.series {
		for _, p := range s.points {
			xs, ys = append(xs, p.x), append(ys, p.y)
		}
	}
	left, right, top, bottom := x0+marginL, x0+w-marginR, y0+marginT, y0+h-marginB
	ax, ay := newAxis(xs, c.logX, left, right), newAxis(ys, c.logY, bottom, top)
	if !c.logY && c.yFmt != nil && len(ys) > 0 && isFractions(ys) {
		ay.lo, ay.hi = 0, 1
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="14" font-weight="bold">%s</text>`+"\n", x0+10, y0+22, html.EscapeString(c.title))
	fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#999"/>`+"\n", left, top, right-left, bottom-top)
	for _, t := range ax.ticks() {
		x := ax.pos(t)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e5e5e5"/>`+"\n", x, top, x, bottom)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#333">%s</text>`+"\n", x, bottom+16, html.EscapeString(c.xFmt(t)))
	}
	for _, t := range ay.ticks() {
		y := ay.pos(t)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e5e5e5"/>`+"\n", left, y, right, y)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end" fill="#333">%s</text>`+"\n", left-6, y+4, html.EscapeString(c.yFmt(t)))
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#333">%s</text>`+"\n", (left+right)/2, bottom+36, html.EscapeString(c.xLabel))
	if c.yLabel != "" {
		fmt.Fprintf(&b, `<text transform="translate(%.1f,%.1f) rotate(-90)" text-anchor="middle" fill="#333">%s</text>`+"\n",
			x0+16, (top+bottom)/2, html.EscapeString(c.yLabel))
	}
	for i, s := range c.series {
		color := palette[i%len(palette)]
		var pts []string
		for _, p := range s.points {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", ax.pos(p.x), ay.pos(p.y)))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", color, strings.Join(pts, " "))
		if len(s.points) <= 12 {
			for _, p := range s.points {
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", ax.pos(p.x), ay.pos(p.y), color)
			}
		}
		ly := top + 16 + float64(i)*16
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="3"/>`+"\n", left+10, ly-4, left+28, ly-4, color)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="#222">%s</text>`+"\n", left+34, ly, html.EscapeString(s.name))
	}
	return b.String()
}

func isFractions(vs []float64) bool {
	for _, v := range vs {
		if v < 0 || v > 1 {
			return false
		}
	}
	return true
}

// barChart draws labelled horizontal bars on a logarithmic scale.
type barChart struct {
	title string
	fmtV  func(float64) string
	bars  []bar
}

type bar struct {
	label string
	value float64
	group int
}

func (c *barChart) add(label string, v float64, group int) {
	if v > 0 {
		c.bars = append(c.bars, bar{label, v, group})
	}
}

const barRow = 26

func (c *barChart) height() float64 { return marginT + float64(len(c.bars))*barRow + marginB }

func (c *barChart) render(x0, y0, w float64) string {
	var b strings.Builder
	const labelW = 300
	left, right, top := x0+labelW, x0+w-90, y0+marginT
	bottom := top + float64(len(c.bars))*barRow
	vals := make([]float64, len(c.bars))
	for i, br := range c.bars {
		vals[i] = br.value
	}
	ax := newAxis(vals, true, left, right)
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="14" font-weight="bold">%s</text>`+"\n", x0+10, y0+22, html.EscapeString(c.title))
	for _, t := range ax.ticks() {
		x := ax.pos(t)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e5e5e5"/>`+"\n", x, top, x, bottom)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#333">%s</text>`+"\n", x, bottom+16, html.EscapeString(c.fmtV(t)))
	}
	for i, br := range c.bars {
		y := top + float64(i)*barRow
		color := palette[br.group%len(palette)]
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end" fill="#222">%s</text>`+"\n", left-8, y+barRow/2+4, html.EscapeString(br.label))
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%d" fill="%s"/>`+"\n", left, y+4, math.Max(1, ax.pos(br.value)-left), barRow-8, color)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="#222">%s</text>`+"\n", ax.pos(br.value)+6, y+barRow/2+4, html.EscapeString(c.fmtV(br.value)))
	}
	return b.String()
}

// Tick formatters.
func durTick(ns float64) string { return fmtDur(time.Duration(ns)) }
func mibTick(m float64) string  { return strconv.FormatFloat(m, 'g', 3, 64) + " MiB" }

// mib converts bytes to MiB, the unit memory and sizes are drawn in.
func mib(b uint64) float64     { return float64(b) / (1 << 20) }
func pctTick(f float64) string { return fmt.Sprintf("%.0f%%", f*100) }
