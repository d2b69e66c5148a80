package main

import (
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// table writes rows under header in columns two spaces apart, each line
// after indent. style, when not nil, may wrap a cell in colour: the
// columns are measured on the cells' text, so escape sequences do not
// shift them (text/tabwriter counts their bytes).
func table(w io.Writer, header []string, rows [][]string, style func(col int, cell string) string, indent string) {
	width := make([]int, len(header))
	for _, r := range append([][]string{header}, rows...) {
		for i, c := range r {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	line := func(r []string, styled bool) {
		var b strings.Builder
		b.WriteString(indent)
		for i, c := range r {
			pad := width[i] - utf8.RuneCountInString(c)
			if styled && style != nil {
				c = style(i, c)
			}
			b.WriteString(c)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", pad+2))
			}
		}
		fmt.Fprintln(w, b.String())
	}
	line(header, false)
	for _, r := range rows {
		line(r, true)
	}
}

// humanDuration is d in its two largest units, as people read an uptime:
// 45s, 12m30s, 3h12m, 2d4h.
func humanDuration(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return d.String()
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
}
