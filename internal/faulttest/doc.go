// Package faulttest holds liveroom's multi-process fault tests: a NATS
// cluster, uplinks, gateways and dispatch run as separate processes of the
// real binary, and the tests kill, stop and restart them under traffic.
package faulttest
