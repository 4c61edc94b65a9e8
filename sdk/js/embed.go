// Package js embeds the liveroom JavaScript SDK (the npm package in this
// directory) so that the web pages serve the very file the package ships:
// internal/web serves Module at /static/liveroom.js.
package js

import _ "embed"

// Module is liveroom.js, the SDK's ES module, byte for byte.
//
//go:embed liveroom.js
var Module []byte
