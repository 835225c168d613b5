package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/media-service/media-service/edge/auth"
)

// token mints an access token for one participant and prints it. The key
// pair comes from MEDIA_API_KEY and MEDIA_API_SECRET, as the instance
// reads them; without a secret it is the public dev pair, which only a
// dev-mode instance accepts.
//
//	media-service token -room R -identity I [-ttl 1h] [-publish=true] [-subscribe=true]
func token(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	room := fs.String("room", "", "room name (required)")
	identity := fs.String("identity", "", "participant identity (required)")
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid")
	publish := fs.Bool("publish", true, "grant publishing tracks")
	subscribe := fs.Bool("subscribe", true, "grant receiving the others' tracks")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *room == "" || *identity == "" {
		fs.Usage()
		return errors.New("token: -room and -identity are required")
	}
	keys, err := tokenKeys(os.Getenv("MEDIA_API_KEY"), os.Getenv("MEDIA_API_SECRET"), stderr)
	if err != nil {
		return err
	}
	t := auth.Token{Room: *room, Identity: *identity, TTL: *ttl,
		Grants: auth.Grants{Publish: *publish, Subscribe: *subscribe}}
	s, err := keys.Mint(t, time.Now())
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	_, err = fmt.Fprintln(stdout, s)
	return err
}

// tokenKeys picks the key pair the way the instance does.
func tokenKeys(key, secret string, stderr io.Writer) (auth.KeyPair, error) {
	if secret == "" {
		fmt.Fprintln(stderr, "media-service: no MEDIA_API_SECRET: minting with the public dev key pair (accepted only by dev-mode instances)")
		return auth.DevKeyPair(), nil
	}
	if key == "" {
		return auth.KeyPair{}, errors.New("token: MEDIA_API_KEY is required when MEDIA_API_SECRET is set")
	}
	return auth.KeyPair{Key: key, Secret: secret}, nil
}
