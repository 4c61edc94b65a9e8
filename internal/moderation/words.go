package moderation

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"unicode"
)

// FilterMode is what the word filter does with a word.
type FilterMode uint8

// Filter modes.
const (
	// Mask replaces each character of the word with '*'.
	Mask FilterMode = iota + 1
	// Block refuses the whole comment.
	Block
)

// WordFilter checks danmaku against a list of words, each with its own
// mode. Matching ignores case and finds words inside longer text (a list is
// short and hand-made; a word inside another is usually what the list means).
// It is immutable and safe for concurrent use; the zero value and nil filter
// nothing.
type WordFilter struct {
	words []filterWord
}

type filterWord struct {
	runes []rune // lower-cased
	text  string
	mode  FilterMode
}

// ParseWordList reads a word list: one entry per line, "block <word>" or
// "mask <word>" (a bare word means mask); blank lines and lines starting
// with # are skipped. A word may contain spaces.
func ParseWordList(r io.Reader) (*WordFilter, error) {
	f := &WordFilter{}
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		mode := Mask
		if rest, ok := strings.CutPrefix(s, "block "); ok {
			mode, s = Block, strings.TrimSpace(rest)
		} else if rest, ok := strings.CutPrefix(s, "mask "); ok {
			s = strings.TrimSpace(rest)
		}
		if err := f.add(s, mode); err != nil {
			return nil, fmt.Errorf("word list line %d: %w", line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("cannot read word list: %w", err)
	}
	return f, nil
}

// NewWordFilter builds a filter from two lists.
func NewWordFilter(block, mask []string) (*WordFilter, error) {
	f := &WordFilter{}
	for _, w := range block {
		if err := f.add(w, Block); err != nil {
			return nil, err
		}
	}
	for _, w := range mask {
		if err := f.add(w, Mask); err != nil {
			return nil, err
		}
	}
	return f, nil
}

func (f *WordFilter) add(w string, mode FilterMode) error {
	w = strings.TrimSpace(w)
	if w == "" {
		return fmt.Errorf("empty word")
	}
	rs := []rune(w)
	for i, r := range rs {
		rs[i] = unicode.ToLower(r)
	}
	f.words = append(f.words, filterWord{runes: rs, text: w, mode: mode})
	return nil
}

// Len is the number of words in the list.
func (f *WordFilter) Len() int {
	if f == nil {
		return 0
	}
	return len(f.words)
}

// Check returns text with masked words starred, or blocked = the first
// block-mode word found (and text unchanged).
func (f *WordFilter) Check(text string) (out string, blocked string) {
	if f == nil || len(f.words) == 0 {
		return text, ""
	}
	rs := []rune(text)
	low := make([]rune, len(rs))
	for i, r := range rs {
		low[i] = unicode.ToLower(r)
	}
	changed := false
	for _, w := range f.words {
		for i := 0; i+len(w.runes) <= len(low); i++ {
			if !hasAt(low, i, w.runes) {
				continue
			}
			if w.mode == Block {
				return text, w.text
			}
			for j := i; j < i+len(w.runes); j++ {
				if !unicode.IsSpace(rs[j]) {
					rs[j] = '*'
				}
			}
			changed = true
			i += len(w.runes) - 1
		}
	}
	if !changed {
		return text, ""
	}
	return string(rs), ""
}

func hasAt(s []rune, i int, w []rune) bool {
	for j, r := range w {
		if s[i+j] != r {
			return false
		}
	}
	return true
}
