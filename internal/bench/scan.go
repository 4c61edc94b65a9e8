package bench

// A minimal JSON walker for server frames. The bench reads every frame of
// tens of thousands of viewers on the same two cores as the gateway, so it
// must not decode whole messages: it walks the bytes once, picks the few
// fields it needs (type, id, ts, gateway, seq) in any order, and skips the
// rest. It does not validate beyond structure.

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t') {
		i++
	}
	return i
}

// readString returns the raw bytes of the string starting at b[i] == '"'
// (escapes left as they are) and the index after its closing quote.
func readString(b []byte, i int) ([]byte, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, i, false
	}
	j := i + 1
	for j < len(b) {
		switch b[j] {
		case '\\':
			j += 2
			continue
		case '"':
			return b[i+1 : j], j + 1, true
		}
		j++
	}
	return nil, i, false
}

// readInt reads a JSON integer (a fraction or exponent is skipped).
func readInt(b []byte, i int) (int64, int, bool) {
	neg := false
	if i < len(b) && b[i] == '-' {
		neg = true
		i++
	}
	start := i
	var v int64
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		v = v*10 + int64(b[i]-'0')
		i++
	}
	if i == start {
		return 0, i, false
	}
	for i < len(b) && (b[i] == '.' || b[i] == 'e' || b[i] == 'E' || b[i] == '+' || b[i] == '-' || b[i] >= '0' && b[i] <= '9') {
		i++
	}
	if neg {
		v = -v
	}
	return v, i, true
}

// skipValue returns the index after the JSON value starting at b[i].
func skipValue(b []byte, i int) (int, bool) {
	i = skipWS(b, i)
	if i >= len(b) {
		return i, false
	}
	switch c := b[i]; {
	case c == '"':
		_, j, ok := readString(b, i)
		return j, ok
	case c == '{' || c == '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				_, j, ok := readString(b, i)
				if !ok {
					return i, false
				}
				i = j
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, true
				}
			}
			i++
		}
		return i, false
	default: // number, true, false, null
		for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' && b[i] != '\n' {
			i++
		}
		return i, true
	}
}

// msgFields are the fields the bench reads from one room message.
type msgFields struct {
	typ, id []byte
	ts      int64
	seq     int64
}

// frameFields are the fields the bench reads from one server frame.
type frameFields struct {
	typ, gateway, code []byte
	seq                int64
}

// objIter walks the members of one JSON object without allocating.
type objIter struct {
	b     []byte
	i     int
	first bool
	bad   bool
}

// startObject positions an iterator on the object at b[i].
func startObject(b []byte, i int) objIter {
	i = skipWS(b, i)
	if i >= len(b) || b[i] != '{' {
		return objIter{b: b, i: i, bad: true}
	}
	return objIter{b: b, i: i + 1, first: true}
}

// next returns the next member's key and the index of its value; the caller
// must then set it.i to the index after the value. ok is false at the end
// of the object (it.i is then after the closing brace) or on bad input
// (it.bad).
func (it *objIter) next() (key []byte, v int, ok bool) {
	if it.bad {
		return nil, 0, false
	}
	b := it.b
	i := skipWS(b, it.i)
	if i >= len(b) {
		it.bad = true
		return nil, 0, false
	}
	if b[i] == '}' {
		it.i = i + 1
		return nil, 0, false
	}
	if !it.first {
		if b[i] != ',' {
			it.bad = true
			return nil, 0, false
		}
		i = skipWS(b, i+1)
	}
	it.first = false
	key, j, ok := readString(b, i)
	if !ok {
		it.bad = true
		return nil, 0, false
	}
	j = skipWS(b, j)
	if j >= len(b) || b[j] != ':' {
		it.bad = true
		return nil, 0, false
	}
	return key, skipWS(b, j+1), true
}

// set records the index after a member's value, or marks the iterator bad.
func (it *objIter) set(j int, ok bool) {
	it.i = j
	if !ok {
		it.bad = true
	}
}

// str reads the string value at b[v] into *dst and moves past it.
func (it *objIter) str(v int, dst *[]byte) {
	s, j, ok := readString(it.b, v)
	*dst = s
	it.set(j, ok)
}

// int reads the integer value at b[v] into *dst and moves past it.
func (it *objIter) int(v int, dst *int64) {
	n, j, ok := readInt(it.b, v)
	*dst = n
	it.set(j, ok)
}

// skip moves past the value at b[v].
func (it *objIter) skip(v int) { it.set(skipValue(it.b, v)) }

// scanFrame reads a server frame's type (and the welcome's gateway and seq,
// an error's code) into f, and appends the messages of a batch to msgs.
func scanFrame(b []byte, f *frameFields, msgs []msgFields) ([]msgFields, bool) {
	*f = frameFields{}
	it := startObject(b, 0)
	for {
		key, v, ok := it.next()
		if !ok {
			break
		}
		switch string(key) {
		case "type":
			it.str(v, &f.typ)
		case "gateway":
			it.str(v, &f.gateway)
		case "seq":
			it.int(v, &f.seq)
		case "error":
			scanError(&it, v, &f.code)
		case "msgs":
			if msgs, ok = scanMsgs(&it, v, msgs); !ok {
				return msgs, false
			}
		default:
			it.skip(v)
		}
	}
	return msgs, !it.bad
}

// scanError reads the code of the error object at b[v] into *code (a value
// of another kind is skipped) and moves it past the value.
func scanError(it *objIter, v int, code *[]byte) {
	b := it.b
	if v >= len(b) || b[v] != '{' {
		it.skip(v)
		return
	}
	e := startObject(b, v)
	for {
		k, ev, ok := e.next()
		if !ok {
			break
		}
		if string(k) == "code" {
			e.str(ev, code)
		} else {
			e.skip(ev)
		}
	}
	it.set(e.i, !e.bad)
}

// scanMsgs appends the messages of the array at b[v] to msgs (a value of
// another kind is skipped) and moves it past the value. ok is false if a
// message or the array is malformed.
func scanMsgs(it *objIter, v int, msgs []msgFields) ([]msgFields, bool) {
	b := it.b
	if v >= len(b) || b[v] != '[' {
		it.skip(v)
		return msgs, true
	}
	i := skipWS(b, v+1)
	if i < len(b) && b[i] == ']' {
		it.set(i+1, true)
		return msgs, true
	}
	for {
		m, j, ok := scanMsg(b, i)
		if !ok {
			return msgs, false
		}
		msgs = append(msgs, m)
		j = skipWS(b, j)
		if j < len(b) && b[j] == ']' {
			it.set(j+1, true)
			return msgs, true
		}
		if j >= len(b) || b[j] != ',' {
			return msgs, false
		}
		i = j + 1
	}
}

// scanMsg reads the message object at b[i] and returns the index after it.
func scanMsg(b []byte, i int) (msgFields, int, bool) {
	var m msgFields
	o := startObject(b, i)
	for {
		k, v, ok := o.next()
		if !ok {
			break
		}
		switch string(k) {
		case "type":
			o.str(v, &m.typ)
		case "id":
			o.str(v, &m.id)
		case "ts":
			o.int(v, &m.ts)
		case "seq":
			o.int(v, &m.seq)
		default:
			o.skip(v)
		}
	}
	return m, o.i, !o.bad
}
