package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/media-service/media-service/edge"
	"github.com/media-service/media-service/edge/auth"
	"github.com/media-service/media-service/internal/envconfig"
)

// token mints an access token for one participant and prints it. The key
// pair comes from MEDIA_API_KEY and MEDIA_API_SECRET, read and checked as
// the instance reads and checks them (edge.Config.Keys), so it never mints
// a token that an instance with the same environment refuses at start.
// Without a secret it is the public dev pair, which only a dev-mode
// instance accepts.
//
//	media-service token -room R -identity I [-ttl 1h] [-publish=true] [-subscribe=true] [-publish-data=true]
//	media-service token -admin [-list-only] [-identity NAME] [-ttl 1h]
//
// -admin mints a token for the server API (docs/API.md) instead: it
// grants room_admin (everything), or only room_list with -list-only.
func token(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	room := fs.String("room", "", "room name (required)")
	identity := fs.String("identity", "", "participant identity (required)")
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid")
	publish := fs.Bool("publish", true, "grant publishing tracks")
	subscribe := fs.Bool("subscribe", true, "grant receiving the others' tracks")
	publishData := fs.Bool("publish-data", true, "grant sending data channel messages")
	admin := fs.Bool("admin", false, "mint a server API token (room_admin) instead of a participant's")
	listOnly := fs.Bool("list-only", false, "with -admin: grant only room_list")
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, tokenUsage(fs))
		return err
	case err != nil:
		return usageError(stderr, tokenUsage(fs), "token: %v", err)
	case *admin:
		return adminToken(stdout, stderr, *identity, *ttl, *listOnly)
	case *listOnly:
		return usageError(stderr, tokenUsage(fs), "token: -list-only needs -admin")
	case *room == "" || *identity == "":
		return usageError(stderr, tokenUsage(fs), "token: -room and -identity are required")
	}
	keys, err := tokenKeys(stderr)
	if err != nil {
		return err
	}
	t := auth.Token{Room: *room, Identity: *identity, TTL: *ttl,
		Grants: auth.Grants{Publish: *publish, Subscribe: *subscribe, PublishData: auth.Allow(*publishData)}}
	s, err := keys.Mint(t, time.Now())
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	_, err = fmt.Fprintln(stdout, s)
	return err
}

// adminToken mints and prints a server API token named name.
func adminToken(stdout, stderr io.Writer, name string, ttl time.Duration, listOnly bool) error {
	keys, err := tokenKeys(stderr)
	if err != nil {
		return err
	}
	g := auth.AdminGrants{RoomAdmin: !listOnly, RoomList: listOnly}
	s, err := keys.MintAdmin(auth.AdminToken{Name: name, Grants: g, TTL: ttl}, time.Now())
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	_, err = fmt.Fprintln(stdout, s)
	return err
}

// tokenUsage is the token command's help, with its flags.
func tokenUsage(fs *flag.FlagSet) string {
	var b strings.Builder
	b.WriteString("Usage:\n  media-service token -room R -identity I [flags]\n  media-service token -admin [-list-only] [flags]\n\n" +
		"Prints an access token signed with MEDIA_API_KEY and MEDIA_API_SECRET\n" +
		"(without a secret, the public dev key pair). Flags:\n")
	fs.SetOutput(&b)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
	return b.String()
}

// tokenKeys picks and checks the key pair the way the instance does.
func tokenKeys(stderr io.Writer) (auth.KeyPair, error) {
	var cfg edge.Config
	if err := envconfig.Parse(&cfg, env.ToMap(os.Environ())); err != nil {
		return auth.KeyPair{}, err
	}
	if cfg.DevMode() {
		fmt.Fprintln(stderr, "media-service: no MEDIA_API_SECRET: minting with the public dev key pair (accepted only by dev-mode instances)")
	}
	return cfg.Keys()
}
