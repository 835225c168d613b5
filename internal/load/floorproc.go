package load

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os/exec"
	"strings"
	"time"
)

// relayUsage is one reading of the child relay.
type relayUsage struct {
	cpu     time.Duration
	in, out uint64
}

// relayProc is the parent's handle on the child relay process.
type relayProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
	addr  netip.AddrPort
}

// startRelayProc starts the floor relay as `fo.exe floor-relay` (with
// -batch for sendmmsg), pinned to fo.cpus when set, so the floor runs
// where the instance it is compared with ran. A relay that fails says
// why on fo.stderr.
func startRelayProc(ctx context.Context, fo floorOptions) (*relayProc, error) {
	args := []string{FloorRelayCommand}
	if fo.batch {
		args = append(args, "-batch")
	}
	name, args, err := pinned(fo.cpus, fo.exe, args...)
	if err != nil {
		return nil, fmt.Errorf("floor: %w", err)
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stderr = fo.stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("floor: stdin pipe: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("floor: stdout pipe: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("floor: start relay %s: %w", fo.exe, err)
	}
	p := &relayProc{cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout)}
	line, err := p.line("addr")
	if err == nil {
		p.addr, err = netip.ParseAddrPort(line)
	}
	if err != nil {
		p.close()
		return nil, fmt.Errorf("floor: relay address: %w", err)
	}
	return p, nil
}

// line reads the child's next line, which must start with word.
func (p *relayProc) line(word string) (string, error) {
	if !p.out.Scan() {
		if err := p.out.Err(); err != nil {
			return "", err
		}
		return "", io.ErrUnexpectedEOF
	}
	rest, ok := strings.CutPrefix(p.out.Text(), word+" ")
	if !ok {
		return "", fmt.Errorf("want %q line, got %q", word, p.out.Text())
	}
	return rest, nil
}

func (p *relayProc) usage() (relayUsage, error) {
	var u relayUsage
	if _, err := io.WriteString(p.stdin, "usage\n"); err != nil {
		return u, fmt.Errorf("floor: ask usage: %w", err)
	}
	line, err := p.line("usage")
	if err != nil {
		return u, fmt.Errorf("floor: read usage: %w", err)
	}
	var ns int64
	if _, err := fmt.Sscanf(line, "%d %d %d", &ns, &u.in, &u.out); err != nil {
		return u, fmt.Errorf("floor: parse usage %q: %w", line, err)
	}
	u.cpu = time.Duration(ns)
	return u, nil
}

// close ends the child (its stdin closes) and waits for it.
func (p *relayProc) close() error {
	p.stdin.Close()
	if err := p.cmd.Wait(); err != nil {
		return fmt.Errorf("floor: relay exit: %w", err)
	}
	return nil
}
