// Package publisher publishes outbox messages to RabbitMQ on one channel in
// confirm mode, with a bounded window of unconfirmed messages
// (docs/contracts.md, "Stream and acknowledgement rules").
// Every message is persistent and mandatory; a message the broker returns
// (unroutable) or nacks ends the channel's session with an error, so that the
// relay restarts from its last confirmed position instead of acking past it.
package publisher

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// ErrUnroutable reports a mandatory message that no queue was bound to receive.
var ErrUnroutable = errors.New("message returned as unroutable")

// ErrNacked reports a message the broker refused to take responsibility for.
var ErrNacked = errors.New("message nacked by the broker")

// ErrClosed reports that the broker connection or channel closed.
var ErrClosed = errors.New("broker connection closed")

// ErrTooLarge reports a message the broker refused because its body is over
// the broker's max_message_size: it closes the channel (406). Publishing it
// again can never succeed.
var ErrTooLarge = errors.New("message larger than the broker's max_message_size")

// Failure is a returned, nacked or refused message.
type Failure struct {
	Err        error // ErrUnroutable, ErrNacked or ErrTooLarge
	Tag        uint64
	MessageID  string
	RoutingKey string
	Reason     string
}

func (f *Failure) Error() string {
	return fmt.Sprintf("%v: message %s routing key %q (delivery tag %d): %s", f.Err, f.MessageID, f.RoutingKey, f.Tag, f.Reason)
}

func (f *Failure) Unwrap() error { return f.Err }

// Handler receives the outcome of each published message, in the order the
// library delivers them, from the goroutine running Publisher.Confirms.
type Handler interface {
	// Confirmed is called once the broker has taken the message; committed
	// is what the caller passed to Publish.
	Confirmed(tag uint64, published, committed time.Time)
	// Failed is called for a returned or nacked message before any confirm of
	// it (RabbitMQ sends basic.return before basic.ack).
	Failed(f *Failure)
	// Blocked is called when the broker blocks the connection (a memory or
	// disk alarm: it stops reading what the relay publishes) and again when
	// it unblocks it.
	Blocked(active bool, reason string)
}

// Publisher owns one connection and one or more confirm-mode channels.
// Publish is called from one goroutine, Confirms from another.
//
// With one channel (the default) every message keeps its place: the broker
// takes them in publishing order. With several, a message goes to the
// channel its route picks (the relay routes by aggregate), so messages of
// one route keep their order and others may pass each other; the window
// bounds them all together, from the oldest unconfirmed message on.
type Publisher struct {
	conn     *amqp.Connection
	exchange string
	chans    []*channel

	win    *window // the unconfirmed messages
	closed chan *amqp.Error
	blocks chan amqp.Blocking
	// blocked is set while the broker blocks the connection: it does not
	// read it then, so a close cannot wait for its close-ok.
	blocked atomic.Bool

	// seqMu orders publishes: sequence numbers follow the Publish calls,
	// whatever channel each takes.
	seqMu sync.Mutex
	seq   uint64

	sock *corkedConn // the broker socket, for Abort
}

// channel is one confirm-mode channel and its unconfirmed messages.
type channel struct {
	ch       *amqp.Channel
	confirms chan amqp.Confirmation
	returns  chan amqp.Return
	closed   chan *amqp.Error // a channel error such as 404 or 406

	mu sync.Mutex
	// flight records the unconfirmed messages by delivery tag modulo the
	// window: amqp091 hands confirms over in publishing order (its confirms
	// type resequences them), so the tags in flight are one contiguous run
	// no longer than the window and never share a place.
	flight []flight
}

type flight struct {
	tag       uint64 // the channel's delivery tag
	seq       uint64 // the publisher's sequence number
	id, key   string
	size      int // of the body, to name the message the broker refuses as too large
	at        time.Time
	committed time.Time
}

// ErrProtocol is a broker answer the publisher cannot account for.
var ErrProtocol = errors.New("publisher: broker protocol error")

// MaxChannels bounds Dial's channels.
const MaxChannels = 16

// Dial connects, opens channels confirm-mode channels (1 to MaxChannels) and
// declares exchange as a durable topic exchange (idempotent when it exists
// with those arguments).
func Dial(ctx context.Context, url, exchange string, window, channels int) (*Publisher, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if channels < 1 || channels > MaxChannels {
		return nil, fmt.Errorf("publisher: %d channels, want 1 to %d", channels, MaxChannels)
	}
	var sock *corkedConn
	conn, err := amqp.DialConfig(url, amqp.Config{
		Heartbeat:  10 * time.Second,
		Locale:     "en_US",
		Properties: amqp.Table{"connection_name": "cdc-relay"},
		Dial: func(network, addr string) (net.Conn, error) {
			c, err := dial(network, addr)
			if err != nil {
				return nil, err
			}
			sock = c
			return c, nil
		},
	})
	if err != nil {
		return nil, fmt.Errorf("connect to broker: %w", err)
	}
	p, err := open(conn, exchange, window, channels)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	p.sock = sock
	return p, nil
}

// dial connects like amqp.DefaultDial, which also bounds the AMQP handshake
// (a broker that accepts TCP but never answers does not hold the relay), and
// corks the connection.
func dial(network, addr string) (*corkedConn, error) {
	c, err := amqp.DefaultDial(10*time.Second)(network, addr)
	if err != nil {
		return nil, err
	}
	return cork(c), nil
}

func open(conn *amqp.Connection, exchange string, window, channels int) (*Publisher, error) {
	p := &Publisher{
		conn:     conn,
		exchange: exchange,
		win:      newWindow(window),
		closed:   conn.NotifyClose(make(chan *amqp.Error, 1)),
		blocks:   conn.NotifyBlocked(make(chan amqp.Blocking, 4)),
	}
	for i := range channels {
		ch, err := conn.Channel()
		if err != nil {
			return nil, fmt.Errorf("open broker channel: %w", err)
		}
		if i == 0 {
			if err := ch.ExchangeDeclare(exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
				return nil, fmt.Errorf("declare exchange %q as a durable topic exchange: %w", exchange, err)
			}
		}
		if err := ch.Confirm(false); err != nil {
			return nil, fmt.Errorf("put channel in confirm mode: %w", err)
		}
		p.chans = append(p.chans, &channel{
			ch: ch,
			// The library blocks its reader until a confirm is taken, so the
			// buffer holds a whole window.
			confirms: ch.NotifyPublish(make(chan amqp.Confirmation, window)),
			// Unbuffered on purpose: the library delivers a return before
			// the ack of the same message, and with no buffer the channel's
			// confirm loop has handled the return before that ack can reach it.
			returns: ch.NotifyReturn(make(chan amqp.Return)),
			closed:  ch.NotifyClose(make(chan *amqp.Error, 1)),
			flight:  make([]flight, window),
		})
	}
	return p, nil
}

// Acquire takes a place in the window, waiting while it is closed (full,
// or filled and not yet a quarter confirmed).
func (p *Publisher) Acquire(ctx context.Context) error { return p.win.acquire(ctx) }

// TryAcquire takes a place in the window if it is open.
func (p *Publisher) TryAcquire() bool { return p.win.tryAcquire() }

// Publish sends msg with routing key key as persistent and mandatory on
// the first channel, and returns its sequence number (1, 2, ...). The caller
// must hold a slot from Acquire; the slot is released when the broker
// confirms or nacks it. committed (the commit time of the row's
// transaction) is handed back to Handler.Confirmed.
func (p *Publisher) Publish(ctx context.Context, key string, msg amqp.Publishing, committed time.Time) (uint64, error) {
	return p.PublishTo(ctx, p.exchange, key, "", msg, committed)
}

// PublishTo is Publish to exchange ("" is the default exchange, which
// routes to the queue named key) on the channel route picks: messages of
// one route share a channel, and keep their order.
func (p *Publisher) PublishTo(ctx context.Context, exchange, key, route string, msg amqp.Publishing, committed time.Time) (uint64, error) {
	msg.DeliveryMode = amqp.Persistent
	c := p.chans[0]
	if len(p.chans) > 1 {
		c = p.chans[routeIndex(route, len(p.chans))]
	}
	now := time.Now()
	p.seqMu.Lock()
	defer p.seqMu.Unlock()
	c.mu.Lock()
	// The tag is taken under c.mu so the channel's confirm loop cannot see
	// a confirm for it before its flight record exists.
	dc, err := c.ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, true, false, msg)
	if err != nil {
		c.mu.Unlock()
		p.win.cancel()
		return 0, fmt.Errorf("publish message %s: %w", msg.MessageId, err)
	}
	p.seq++
	c.flight[c.slot(dc.DeliveryTag)] = flight{tag: dc.DeliveryTag, seq: p.seq, id: msg.MessageId, key: key, size: len(msg.Body), at: now, committed: committed}
	c.mu.Unlock()
	return p.seq, nil
}

// Flush sends the publishes the connection holds back (see corkedConn) at
// once. The relay calls it before it reads more WAL, so what it decoded
// from one read leaves in one write, without waiting for a timer. It does
// nothing while the broker blocks the connection: the write would wait.
func (p *Publisher) Flush() {
	if p.sock == nil || p.blocked.Load() {
		return
	}
	p.sock.flushNow()
}

// routeIndex picks one of n channels for route (FNV-1a).
func routeIndex(route string, n int) int {
	h := uint32(2166136261)
	for i := 0; i < len(route); i++ {
		h ^= uint32(route[i])
		h *= 16777619
	}
	return int(h % uint32(n))
}

// Channels is the number of channels.
func (p *Publisher) Channels() int { return len(p.chans) }

// DeclareQueue declares a durable queue named name (idempotent), such as a
// parking queue.
func (p *Publisher) DeclareQueue(name string) error {
	if _, err := p.chans[0].ch.QueueDeclare(name, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare queue %q: %w", name, err)
	}
	return nil
}

// ParkingExchange is the alternate exchange of the park mode for exchange:
// a fanout exchange "<exchange>.unroutable" bound to a durable queue of the
// same name.
func ParkingExchange(exchange string) string { return exchange + ".unroutable" }

// DeclareParking declares the park mode's alternate exchange and its queue
// (idempotent). What links the relay's exchange to it is a policy
// (mgmt.SetAlternateExchange), not a declaration argument: services that
// declare the exchange themselves, without the argument, would otherwise be
// refused (406 inequivalent arg 'alternate-exchange').
func (p *Publisher) DeclareParking() error {
	name := ParkingExchange(p.exchange)
	ch := p.chans[0].ch
	if err := ch.ExchangeDeclare(name, amqp.ExchangeFanout, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare the alternate exchange %q: %w", name, err)
	}
	if _, err := ch.QueueDeclare(name, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare queue %q: %w", name, err)
	}
	if err := ch.QueueBind(name, "", name, false, nil); err != nil {
		return fmt.Errorf("bind queue %q to exchange %q: %w", name, name, err)
	}
	return nil
}

// WatchParked calls fn with every message the alternate exchange of the park
// mode receives, until ctx ends or the broker closes the channel: a queue of
// its own (exclusive, deleted with the connection) bound to that fanout
// exchange sees a copy of each, while the durable parking queue keeps them
// for the operator.
func (p *Publisher) WatchParked(ctx context.Context, fn func(amqp.Delivery)) error {
	ch, err := p.conn.Channel()
	if err != nil {
		return fmt.Errorf("open the parking watch channel: %w", err)
	}
	defer ch.Close()
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		return fmt.Errorf("declare the parking watch queue: %w", err)
	}
	if err := ch.QueueBind(q.Name, "", ParkingExchange(p.exchange), false, nil); err != nil {
		return fmt.Errorf("bind the parking watch queue: %w", err)
	}
	deliveries, err := ch.Consume(q.Name, "cdc-relay-parking-watch", true, true, false, false, nil)
	if err != nil {
		return fmt.Errorf("watch parked messages: %w", err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case d, ok := <-deliveries:
			if !ok {
				return fmt.Errorf("%w: the parking watch channel closed", ErrClosed)
			}
			fn(d)
		}
	}
}

// FrameMax is the largest frame the connection negotiated: a message's
// properties and headers must fit in one frame.
func (p *Publisher) FrameMax() int { return p.conn.Config.FrameSize }

func (c *channel) slot(tag uint64) int { return int(tag % uint64(len(c.flight))) }

// seqOf finds the sequence number of an unconfirmed message (returns are
// rare: a scan of the window is cheaper than an index kept for every message).
func (c *channel) seqOf(id string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range c.flight {
		if f.id == id && f.tag != 0 {
			return f.seq
		}
	}
	return 0
}

// InFlight is the number of unconfirmed messages.
func (p *Publisher) InFlight() int { return p.win.inFlight() }

// Confirms delivers confirms and returns to h until ctx ends (nil), the
// broker closes a channel or the connection (ErrClosed), or a message is
// returned, nacked or refused (*Failure). Returns and nacks are handed to h
// before this returns, so h can make sure nothing is acknowledged past them.
// Each channel's outcomes come from a goroutine of its own, in the order the
// broker sent them.
func (p *Publisher) Confirms(ctx context.Context, h Handler) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(p.chans)+1)
	var wg sync.WaitGroup
	for _, c := range p.chans {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.confirmLoop(ctx, c, h); err != nil {
				errs <- err
				cancel()
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case b, ok := <-p.blocks:
				if ok {
					p.blocked.Store(b.Active)
					h.Blocked(b.Active, b.Reason)
				}
			case err := <-p.closed:
				errs <- closedErr("connection", err)
				cancel()
				return
			}
		}
	}()
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

func (p *Publisher) confirmLoop(ctx context.Context, c *channel, h Handler) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case r, ok := <-c.returns:
			if !ok {
				return p.closeCause(c, "return channel closed")
			}
			f := &Failure{Err: ErrUnroutable, Tag: c.seqOf(r.MessageId), MessageID: r.MessageId, RoutingKey: r.RoutingKey,
				Reason: fmt.Sprintf("%d %s: no queue is bound to exchange %q with a matching key", r.ReplyCode, r.ReplyText, r.Exchange)}
			h.Failed(f)
			return f
		case cf, ok := <-c.confirms:
			if !ok {
				return p.closeCause(c, "confirm channel closed")
			}
			c.mu.Lock()
			fl := c.flight[c.slot(cf.DeliveryTag)]
			if fl.tag != cf.DeliveryTag {
				c.mu.Unlock()
				// A confirm for a message this channel did not publish (a
				// broker bug, or a multiple ack past the last tag, which
				// amqp091 expands without checking): counting it would
				// confirm another message. The session ends; the relay
				// resends from its confirmed position.
				return fmt.Errorf("%w: the broker confirmed delivery tag %d, which has no unconfirmed message on this channel", ErrProtocol, cf.DeliveryTag)
			}
			c.flight[c.slot(cf.DeliveryTag)] = flight{}
			c.mu.Unlock()
			// The slot is given back after the handler has seen the outcome:
			// a drain that waits for an empty window then finds every
			// confirm in the tracker.
			if !cf.Ack {
				f := &Failure{Err: ErrNacked, Tag: fl.seq, MessageID: fl.id, RoutingKey: fl.key,
					Reason: "the broker could not store it (disk or memory alarm, queue limit, or an internal error)"}
				h.Failed(f)
				p.win.settle(fl.seq)
				return f
			}
			h.Confirmed(fl.seq, fl.at, fl.committed)
			p.win.settle(fl.seq)
		case err := <-c.closed:
			return p.channelClosed(c, err)
		}
	}
}

// Abort breaks the broker socket at once, without the AMQP close handshake:
// a Publish blocked writing to a broker that stopped reading (an alarm, a
// dead peer) returns with an error. For stops that cannot wait.
func (p *Publisher) Abort() {
	if p.sock != nil {
		p.sock.abort()
	}
}

// Open reports whether the connection and every channel are usable.
func (p *Publisher) Open() bool {
	if p.conn.IsClosed() {
		return false
	}
	for _, c := range p.chans {
		if c.ch.IsClosed() {
			return false
		}
	}
	return true
}

// Close closes the channel and the connection. Call it after Confirms has
// returned.
func (p *Publisher) Close() error {
	// The library blocks its frame reader on every notification nobody
	// takes (further returns, confirms), which would keep it from reading
	// the close-ok: drain them until the library closes the channels.
	for _, c := range p.chans {
		go func() {
			for range c.returns {
			}
		}()
		go func() {
			for range c.confirms {
			}
		}()
	}
	go func() {
		for range p.blocks {
		}
	}()
	wait := 5 * time.Second
	if p.blocked.Load() {
		wait = 200 * time.Millisecond // a blocked broker reads nothing, close-ok included
	}
	return p.conn.CloseDeadline(time.Now().Add(wait))
}

// closeCause is the error of a closed notification channel: the library
// tells why on the close notifications first, then closes the others, so a
// closed confirm channel finds the reason waiting there.
func (p *Publisher) closeCause(c *channel, what string) error {
	select {
	case err := <-c.closed:
		return p.channelClosed(c, err)
	case err := <-p.closed:
		return closedErr("connection", err)
	default:
		return fmt.Errorf("%w: %s", ErrClosed, what)
	}
}

func (p *Publisher) channelClosed(c *channel, err *amqp.Error) error {
	if f := c.tooLarge(err); f != nil {
		return f
	}
	return closedErr("channel", err)
}

// tooLargeRE matches RabbitMQ's refusal of a body over max_message_size
// (rabbit_channel:check_msg_size): "message size 2000 is larger than
// configured max size 1024".
var tooLargeRE = regexp.MustCompile(`message size (\d+) is larger than (?:configured )?max size (\d+)`)

// tooLarge names the message a channel closed for being too large: the
// first unconfirmed one of that body size.
func (c *channel) tooLarge(err *amqp.Error) *Failure {
	if err == nil || err.Code != amqp.PreconditionFailed {
		return nil
	}
	m := tooLargeRE.FindStringSubmatch(err.Reason)
	if m == nil {
		return nil
	}
	size, _ := strconv.Atoi(m[1])
	c.mu.Lock()
	defer c.mu.Unlock()
	var found *flight
	for i := range c.flight {
		f := &c.flight[i]
		if f.tag != 0 && f.size == size && (found == nil || f.tag < found.tag) {
			found = f
		}
	}
	if found == nil {
		return nil
	}
	return &Failure{Err: ErrTooLarge, Tag: found.seq, MessageID: found.id, RoutingKey: found.key,
		Reason: fmt.Sprintf("the broker closed the channel: %s (a body of %d bytes over max_message_size %s)", err.Reason, size, m[2])}
}

func closedErr(what string, err *amqp.Error) error {
	if err == nil {
		return fmt.Errorf("%w: %s closed", ErrClosed, what)
	}
	return fmt.Errorf("%w: %s closed: %v", ErrClosed, what, err)
}
