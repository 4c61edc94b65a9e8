//go:build !linux

package bench

import "errors"

// The viewers' reader is built on epoll; elsewhere the bench cannot hold
// viewers (the floor server and the report code still build).

var errNoEpoll = errors.New("liveroom bench holds viewers with epoll: Linux only")

func newPoller(*Agent) (*poller, error) { return nil, errNoEpoll }

func (p *poller) run() {}

func epollAdd(int, int) error { return errNoEpoll }
