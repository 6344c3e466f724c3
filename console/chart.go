package console

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/iu-engine/iu"
)

// chart is a small time-series chart, its geometry computed here and laid
// out as SVG by the template: the server draws it, the browser only shows
// it.
type chart struct {
	W, H                       int // the viewBox
	PlotX, PlotY, PlotW, PlotH float64
	Bars                       []bar
	Lines                      []string // polyline points; a gap where there was no data
	YTicks                     []tick
	XTicks                     []tick
	Title                      string // the accessible name
	Desc                       string // the accessible description: the numbers in words
}

type bar struct {
	X, Y, W, H float64
	Title      string
}

type tick struct {
	X, Y  float64
	Label string
}

const (
	chartW, chartH = 520, 170
	padL, padR     = 58.0, 14.0
	padT, padB     = 10.0, 26.0
)

func newChart(title string) chart {
	return chart{W: chartW, H: chartH, PlotX: padL, PlotY: padT, PlotW: chartW - padL - padR, PlotH: chartH - padT - padB, Title: title}
}

// niceMax rounds v up to 1, 2 or 5 times a power of ten, so that the axis
// reads well.
func niceMax(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func (c *chart) yTicks(max float64, label func(float64) string) {
	for i := 0; i <= 2; i++ {
		v := max * float64(i) / 2
		c.YTicks = append(c.YTicks, tick{X: c.PlotX - 6, Y: c.PlotY + c.PlotH - c.PlotH*float64(i)/2, Label: label(v)})
	}
}

// xTicks labels the time axis every few minutes, as minutes ago.
func (c *chart) xTicks(points []iu.ActivityPoint) {
	n := len(points)
	step := n / 3
	if step == 0 {
		return
	}
	for i := 0; i < n; i += step {
		ago := time.Duration(n-i) * iu.ActivityBucket
		c.XTicks = append(c.XTicks, tick{X: c.PlotX + c.PlotW*float64(i)/float64(n), Y: c.PlotY + c.PlotH + 18, Label: "−" + strconv.Itoa(int(ago.Minutes())) + " min"})
	}
	c.XTicks = append(c.XTicks, tick{X: c.PlotX + c.PlotW, Y: c.PlotY + c.PlotH + 18, Label: "now"})
}

// rateChart draws requests per second, one bar per bucket.
func rateChart(points []iu.ActivityPoint) chart {
	c := newChart("Events per second")
	peak := 0.0
	for _, p := range points {
		peak = max(peak, float64(p.Counts.Total())/iu.ActivityBucket.Seconds())
	}
	top := niceMax(peak)
	c.yTicks(top, func(v float64) string { return trimFloat(v) + "/s" })
	c.xTicks(points)
	w := c.PlotW / float64(len(points))
	for i, p := range points {
		r := float64(p.Counts.Total()) / iu.ActivityBucket.Seconds()
		if r == 0 {
			continue
		}
		h := math.Max(1, c.PlotH*r/top)
		c.Bars = append(c.Bars, bar{X: round1(c.PlotX + w*float64(i)), Y: round1(c.PlotY + c.PlotH - h), W: round1(math.Max(w-1, 1)), H: round1(h),
			Title: fmt.Sprintf("%s: %s events/s", p.Start.UTC().Format("15:04:05"), trimFloat(r))})
	}
	c.Desc = fmt.Sprintf("Peak %s events per second over the last %d minutes.", trimFloat(peak), len(points)*int(iu.ActivityBucket.Seconds())/60)
	return c
}

// latencyChart draws the 99th percentile latency per bucket as a line,
// broken where a bucket had no requests.
func latencyChart(points []iu.ActivityPoint) chart {
	c := newChart("p99 latency")
	var peak time.Duration
	for _, p := range points {
		peak = max(peak, p.P99)
	}
	topMS := niceMax(float64(peak) / float64(time.Millisecond))
	c.yTicks(topMS, func(v float64) string { return trimFloat(v) + " ms" })
	c.xTicks(points)
	w := c.PlotW / float64(len(points))
	var line []string
	flush := func() {
		if len(line) == 1 { // a lone point: draw it as a short dash
			line = append(line, line[0])
		}
		if len(line) > 0 {
			c.Lines = append(c.Lines, strings.Join(line, " "))
		}
		line = nil
	}
	for i, p := range points {
		if p.P99 <= 0 {
			flush()
			continue
		}
		ms := float64(p.P99) / float64(time.Millisecond)
		x := c.PlotX + w*(float64(i)+0.5)
		y := c.PlotY + c.PlotH - c.PlotH*ms/topMS
		line = append(line, trimFloat(round1(x))+","+trimFloat(round1(y)))
	}
	flush()
	if peak > 0 {
		c.Desc = fmt.Sprintf("Highest 10-second p99 latency over the last %d minutes: %s.", len(points)*int(iu.ActivityBucket.Seconds())/60, dur(peak))
	} else {
		c.Desc = "No requests in this window."
	}
	return c
}

func round1(f float64) float64 { return math.Round(f*10) / 10 }

func trimFloat(f float64) string {
	if f == math.Trunc(f) {
		return strconv.FormatFloat(f, 'f', 0, 64)
	}
	return strconv.FormatFloat(f, 'f', 1, 64)
}
