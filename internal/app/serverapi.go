package app

import (
	"github.com/liveroom/liveroom/internal/apikey"
	"github.com/liveroom/liveroom/internal/presence"
	"github.com/liveroom/liveroom/internal/web"
)

// startServerAPI loads the server API's keys and starts the presence
// tracker. In dev mode with no key configured it makes a "dev" key and logs
// it: a dev-mode node listens on loopback only, like its dev tokens.
func (n *Node) startServerAPI() error {
	kcfg := n.cfg.APIKeys
	kcfg.Logger = n.log
	keys, err := apikey.New(kcfg)
	if err != nil {
		return err
	}
	if n.dev && keys.Len() == 0 {
		n.devAPIKey = apikey.Generate()
		if err := keys.Add("dev", n.devAPIKey); err != nil {
			return err
		}
		n.log.Warn("DEV MODE: the server API (/v1/server/…) takes this dev API key, valid until the process stops: Authorization: Bearer " + n.devAPIKey)
	}
	n.apiKeys = keys
	n.presence = presence.New(n.nc)
	n.publicRooms = n.up.NewPublicRooms(n.presence)
	return n.presence.Start()
}

// DevAPIKey is the server API key a dev-mode node made for itself, or "".
func (n *Node) DevAPIKey() string { return n.devAPIKey }

// liveRooms feeds the index page's "Live now".
func (n *Node) liveRooms() []web.LiveRoom {
	rooms := n.publicRooms.List(web.MaxLiveRooms)
	out := make([]web.LiveRoom, len(rooms.Rooms))
	for i, r := range rooms.Rooms {
		out[i] = web.LiveRoom{ID: r.Room, Online: r.Online, Live: r.Live}
	}
	return out
}
