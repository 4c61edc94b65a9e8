package uplink

import "time"

// bodyReadTimeout is how long a send request's body may take to arrive once
// its headers are in. The headers have the HTTP server's ReadHeaderTimeout;
// without this a client trickling a 4 KiB body a byte a minute would hold a
// connection and a goroutine for hours (slowloris on the body). A variable so
// that tests can shorten it.
var bodyReadTimeout = 10 * time.Second
