package main

import (
	"os"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Table output is for people: boxes of key/value columns in the manner of
// the AWS CLI's table output, titled with the operation's name. An object's
// scalar fields make one row under their names, its lists and objects
// nested sections; a list of objects makes one row per object. A section
// too wide for the terminal turns into NAME | VALUE rows. Scripts should
// read JSON or text instead.

// tableSection is one box of a table.
type tableSection struct {
	title   string
	indent  int
	headers []string
	rows    [][]string
}

type tableBuilder struct{ sections []*tableSection }

func (b *tableBuilder) section(title string, indent int) *tableSection {
	s := &tableSection{title: title, indent: indent}
	b.sections = append(b.sections, s)
	return s
}

// current is the section rows go to: the last one, or a new untitled one.
func (b *tableBuilder) current(indent int) *tableSection {
	if len(b.sections) == 0 {
		return b.section("", indent)
	}
	return b.sections[len(b.sections)-1]
}

func (b *tableBuilder) build(title string, v any, indent int) {
	if isEmpty(v) {
		return
	}
	if title != "" {
		b.section(title, indent)
	}
	switch t := v.(type) {
	case []any:
		if _, ok := t[0].(*object); ok {
			b.buildList(title, t, indent)
			return
		}
		for _, e := range t {
			switch et := e.(type) {
			case []any:
				if allScalars(et) {
					b.current(indent).addRow(scalarsText(et))
				} else {
					b.build("", et, indent)
				}
			case *object:
				b.build("", et, indent)
			default:
				b.current(indent).addRow([]string{textScalar(e)})
			}
		}
	case *object:
		scalars, nested := splitKeys(t)
		s := b.current(indent)
		switch len(scalars) {
		case 0:
		case 1:
			s.addRow([]string{scalars[0], textScalar(t.vals[scalars[0]])})
		default:
			s.headers = scalars
			row := make([]string, len(scalars))
			for i, k := range scalars {
				row[i] = textScalar(t.vals[k])
			}
			s.addRow(row)
		}
		for _, k := range nested {
			b.build(k, t.vals[k], indent+1)
		}
	default:
		b.current(indent).addRow([]string{textScalar(v)})
	}
}

func (b *tableBuilder) buildList(title string, list []any, indent int) {
	headerSet, nestedSet := map[string]bool{}, map[string]bool{}
	for _, e := range list {
		if o, ok := e.(*object); ok {
			s, n := splitKeys(o)
			for _, k := range s {
				headerSet[k] = true
			}
			for _, k := range n {
				nestedSet[k] = true
			}
		}
	}
	headers, nested := sortedKeys(headerSet), sortedKeys(nestedSet)
	s := b.current(indent)
	s.headers = headers
	for i, e := range list {
		o, ok := e.(*object)
		if !ok {
			continue
		}
		if i > 0 && len(nested) > 0 {
			s = b.section(title, indent)
			s.headers = headers
		}
		row := make([]string, len(headers))
		for j, h := range headers {
			if v, ok := o.get(h); ok {
				row[j] = textScalar(v)
			}
		}
		if len(headers) > 0 {
			s.addRow(row)
		}
		for _, k := range nested {
			if v, ok := o.get(k); ok {
				b.build(k, v, indent+1)
			}
		}
	}
}

func (s *tableSection) addRow(r []string) { s.rows = append(s.rows, r) }

func isEmpty(v any) bool {
	switch t := v.(type) {
	case nil:
		return true
	case []any:
		return len(t) == 0
	case *object:
		return len(t.keys) == 0
	}
	return false
}

func allScalars(list []any) bool {
	for _, e := range list {
		if !isScalar(e) {
			return false
		}
	}
	return true
}

func scalarsText(list []any) []string {
	out := make([]string, len(list))
	for i, e := range list {
		out[i] = textScalar(e)
	}
	return out
}

func splitKeys(o *object) (scalars, nested []string) {
	for _, k := range o.keys {
		if isScalar(o.vals[k]) {
			scalars = append(scalars, k)
		} else {
			nested = append(nested, k)
		}
	}
	sort.Strings(scalars)
	sort.Strings(nested)
	return scalars, nested
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// columns is how many cells the section's lines have.
func (s *tableSection) columns() int {
	n := len(s.headers)
	for _, r := range s.rows {
		n = max(n, len(r))
	}
	return n
}

// minWidths are the narrowest widths of the section's columns: the
// longest cell and two spaces on each side.
func (s *tableSection) minWidths() []int {
	w := make([]int, s.columns())
	for i, h := range s.headers {
		w[i] = max(w[i], utf8.RuneCountInString(h)+4)
	}
	for _, r := range s.rows {
		for i, c := range r {
			w[i] = max(w[i], utf8.RuneCountInString(c)+4)
		}
	}
	return w
}

// width is the narrowest whole line the section fits in.
func (s *tableSection) width() int {
	inner := utf8.RuneCountInString(s.title) + 4
	w := s.minWidths()
	cols := len(w) + 1
	for _, x := range w {
		cols += x
	}
	return max(inner, cols) + 2*s.indent
}

// vertical turns a one-row section into NAME | VALUE rows.
func (s *tableSection) vertical() {
	if len(s.headers) == 0 || len(s.rows) != 1 {
		return
	}
	rows := make([][]string, len(s.headers))
	for i, h := range s.headers {
		v := ""
		if i < len(s.rows[0]) {
			v = s.rows[0][i]
		}
		rows[i] = []string{h, v}
	}
	s.headers, s.rows = nil, rows
}

// formatTable renders v as a table of the given maximal width.
func formatTable(v any, title string, maxWidth int) string {
	b := &tableBuilder{}
	if title == "" {
		title = "Result"
	}
	b.section(title, 0)
	if !isEmpty(v) {
		b.build("", v, 0)
	}
	width := 0
	for _, s := range b.sections {
		width = max(width, s.width())
	}
	if width > maxWidth {
		width = 0
		for _, s := range b.sections {
			s.vertical()
			width = max(width, s.width())
		}
	}
	var out strings.Builder
	for i, s := range b.sections {
		s.render(&out, width, i == 0)
	}
	return out.String()
}

func (s *tableSection) render(out *strings.Builder, width int, first bool) {
	side := strings.Repeat("|", s.indent)
	inner := width - 2*s.indent
	line := func(body string) {
		out.WriteString(side + body + side + "\n")
	}
	if s.title != "" {
		if first {
			line(strings.Repeat("-", inner))
		}
		line("|" + center(s.title, inner-2) + "|")
	}
	widths := s.minWidths()
	if len(widths) == 0 {
		if s.title != "" {
			line("+" + strings.Repeat("-", inner-2) + "+")
		}
		return
	}
	// Spread what is left of the line over the columns.
	used := len(widths) + 1
	for _, w := range widths {
		used += w
	}
	for i := 0; used < inner; i = (i + 1) % len(widths) {
		widths[i]++
		used++
	}
	sep := func() {
		parts := make([]string, len(widths))
		for i, w := range widths {
			parts[i] = strings.Repeat("-", w)
		}
		line("+" + strings.Join(parts, "+") + "+")
	}
	cells := func(r []string, centred bool) {
		parts := make([]string, len(widths))
		for i, w := range widths {
			c := ""
			if i < len(r) {
				c = r[i]
			}
			if centred {
				parts[i] = center(c, w)
			} else {
				parts[i] = "  " + c + strings.Repeat(" ", w-2-utf8.RuneCountInString(c))
			}
		}
		line("|" + strings.Join(parts, "|") + "|")
	}
	sep()
	if len(s.headers) > 0 {
		cells(s.headers, true)
		sep()
	}
	for _, r := range s.rows {
		cells(r, false)
	}
	sep()
}

func center(s string, w int) string {
	n := utf8.RuneCountInString(s)
	if n >= w {
		return s
	}
	left := (w - n) / 2
	return strings.Repeat(" ", left) + s + strings.Repeat(" ", w-n-left)
}

// terminalWidth is $COLUMNS, else 80 as for a pipe.
func terminalWidth() int {
	if n, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && n > 20 {
		return n
	}
	return 80
}
