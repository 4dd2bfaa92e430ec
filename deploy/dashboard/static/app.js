// The saga dashboard: places orders through the API and shows, live, each
// order joined with its reservation and payment by order_id, the stock, and
// the state of each cdc-relay. Plain JavaScript, no build step; every value
// from the API goes into the page as text (textContent), never as HTML.
'use strict';

(() => {
  // The API's base URL: the page's own origin (the gateway on :8080), or
  // ?api=http://host:8080 when the page is served from elsewhere (the API
  // answers any origin, like the CORS plugin of the demo's Kong).
  const API = (new URLSearchParams(location.search).get('api') || '').replace(/\/+$/, '');
  const POLL_MS = 500; // the original demo's dashboard polled every 500 ms
  const RELAY_POLL_MS = 1000;
  const HIDDEN_POLL_MS = 3000; // a background tab asks less often
  const MAX_ROWS = 100;
  const RELAYS = ['order', 'stock', 'payment'];
  const FIELDS = ['customer_id', 'product_id', 'amount', 'quantity'];

  const $ = (sel) => document.querySelector(sel);

  // el builds an element: el('td', {class: 'num'}, 'text', child, ...).
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null) continue;
      if (k === 'class') e.className = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) {
      if (c === undefined || c === null) continue;
      e.append(c instanceof Node ? c : String(c));
    }
    return e;
  }

  function pill(status) {
    return el('span', {class: 'pill st-' + String(status).replace(/[^a-z_]/g, '')}, status);
  }

  function muted(text) {
    return el('span', {class: 'muted'}, text);
  }

  async function getJSON(path) {
    const r = await fetch(API + path, {cache: 'no-store', headers: {Accept: 'application/json'}});
    if (!r.ok) throw new Error(`GET ${path}: HTTP ${r.status}`);
    return r.json();
  }

  function delay() {
    return document.hidden ? HIDDEN_POLL_MS : POLL_MS;
  }

  // ------------------------------------------------------------ formatting

  function bytes(n) {
    if (n === undefined || n === null) return '–';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let v = Number(n), i = 0;
    while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i === 0 ? String(v) : v.toFixed(v < 10 ? 1 : 0)) + ' ' + units[i];
  }

  function ago(iso) {
    if (!iso) return null;
    const t = Date.parse(iso);
    if (Number.isNaN(t)) return iso;
    const s = Math.max(0, (Date.now() - t) / 1000);
    if (s < 1) return 'just now';
    if (s < 60) return Math.floor(s) + ' s ago';
    if (s < 3600) return Math.floor(s / 60) + ' min ago';
    if (s < 86400) return Math.floor(s / 3600) + ' h ago';
    return new Date(t).toLocaleString();
  }

  function seconds(v) {
    if (v === undefined || v === null) return '–';
    return v < 10 ? v.toFixed(1) + ' s' : Math.round(v) + ' s';
  }

  // ------------------------------------------------------------ connection

  let lastError = '';
  function setConn(ok, message) {
    const c = $('#conn');
    if (ok) {
      c.dataset.state = 'live';
      $('#conn-text').textContent = 'live · ' + new Date().toLocaleTimeString();
      lastError = '';
    } else {
      c.dataset.state = 'down';
      $('#conn-text').textContent = 'API unreachable: ' + message;
      if (message !== lastError) console.warn('dashboard:', message);
      lastError = message;
    }
  }

  // ---------------------------------------------------------------- orders

  // byOrder indexes rows by order_id as a string: reservations and payments
  // carry it as a string, orders as a number (the original demo joined with ==).
  function byOrder(rows) {
    const m = new Map();
    for (const r of rows) m.set(String(r.order_id), r);
    return m;
  }

  let lastCreated = '';

  function renderOrders(orders, reservations, payments) {
    const res = byOrder(reservations);
    const pay = byOrder(payments);
    const rows = orders.slice().reverse().slice(0, MAX_ROWS);
    const body = document.createDocumentFragment();
    for (const o of rows) {
      const id = String(o.order_id);
      const r = res.get(id);
      const p = pay.get(id);
      const settled = o.status !== 'created' && o.status !== 'reserved';

      let resCell;
      if (r) resCell = el('td', {class: 'reservation', 'data-status': r.status}, pill(r.status), el('span', {class: 'aside'}, '× ' + r.quantity));
      else resCell = el('td', {class: 'reservation', 'data-status': ''}, muted(o.status === 'created' ? 'waiting…' : 'none'));

      let payCell;
      if (p) payCell = el('td', {class: 'payment', 'data-status': p.status}, pill(p.status), el('span', {class: 'aside'}, p.amount));
      else payCell = el('td', {class: 'payment', 'data-status': ''}, muted(settled ? 'none' : 'waiting…'));

      body.append(el('tr', {'data-order-id': id, class: id === lastCreated ? 'mine' : null},
        el('td', {class: 'num id'}, '#' + id),
        el('td', null, o.customer_id),
        el('td', null, o.product_id),
        el('td', {class: 'num'}, o.amount),
        el('td', {class: 'num'}, o.quantity),
        el('td', {class: 'order-status', 'data-status': o.status}, pill(o.status)),
        resCell,
        payCell));
    }
    $('#orders tbody').replaceChildren(body);
    $('#orders-empty').hidden = orders.length > 0;
    const more = $('#orders-more');
    more.hidden = orders.length <= MAX_ROWS;
    more.textContent = `Showing the latest ${MAX_ROWS} of ${orders.length} orders.`;
  }

  function renderStock(stocks) {
    const box = $('#stock');
    const items = stocks.map((s) => el('span', {class: 'stock-item', 'data-product': s.product_id},
      'product ' + s.product_id + ': ', el('b', null, s.quantity), ' in stock'));
    box.replaceChildren(...items);
  }

  async function pollSaga() {
    try {
      const [orders, reservations, payments, stocks] = await Promise.all([
        getJSON('/order/api/v1/orders/'),
        getJSON('/stock/api/v1/reservations/'),
        getJSON('/payment/api/v1/payments/'),
        getJSON('/stock/api/v1/stocks/'),
      ]);
      renderOrders(orders, reservations, payments);
      renderStock(stocks);
      setConn(true);
    } catch (e) {
      setConn(false, e.message);
    } finally {
      setTimeout(pollSaga, delay());
    }
  }

  // ---------------------------------------------------------------- relays

  function row(label, value, field, title) {
    return el('div', {class: 'kv'},
      el('dt', null, label),
      el('dd', {'data-field': field, title: title || null}, value));
  }

  function relayCard(name, st, err) {
    if (err) {
      return el('article', {class: 'relay', 'data-name': name, 'data-phase': 'unreachable'},
        el('header', null, el('h3', null, name), el('span', {class: 'phase ph-unreachable'}, 'unreachable')),
        el('p', {class: 'relay-error', 'data-field': 'last_error'}, err));
    }
    const phase = st.phase || 'unknown';
    const walTitle = st.safe_wal_size !== undefined ? 'safe_wal_size ' + bytes(st.safe_wal_size) : null;
    return el('article', {class: 'relay', 'data-name': name, 'data-phase': phase, 'data-ready': String(!!st.ready)},
      el('header', null,
        el('h3', null, name),
        el('span', {class: 'phase ph-' + phase.replace(/[^a-z]/g, ''), title: st.reason || (st.ready ? 'ready' : 'not ready')}, phase)),
      el('p', {class: 'slot'}, 'slot ', el('code', null, st.slot || '?'), st.ready ? '' : el('span', {class: 'notready'}, ' · not ready' + (st.reason ? ': ' + st.reason : ''))),
      el('dl', null,
        // wal_status comes with the slot's health, read at each heartbeat:
        // before the first one, lag and retained WAL are not measured yet.
        row('lag', st.wal_status ? bytes(st.lag_bytes) : '–', 'lag_bytes',
          st.wal_status ? st.lag_bytes + ' bytes from the server\'s WAL to the confirmed position' : 'not measured yet'),
        row('retained WAL', st.wal_status ? bytes(st.retained_wal_bytes) + ' · ' + st.wal_status : '–', 'retained_wal_bytes',
          st.wal_status ? walTitle : 'not measured yet'),
        row('events published', st.events_published ?? 0, 'events_published', 'messages published and confirmed by the broker'),
        row('last event', ago(st.last_event_at) || 'none yet', 'last_event_at', st.last_event_at || null),
        row('heartbeat age', seconds(st.heartbeat_age_seconds), 'heartbeat_age_seconds', 'age of the last heartbeat read back from the WAL')),
      el('p', {class: st.last_error ? 'relay-error' : 'relay-ok', 'data-field': 'last_error', title: st.last_error_at || null},
        st.last_error ? 'last error: ' + st.last_error : 'no error'));
  }

  async function pollRelays() {
    const cards = await Promise.all(RELAYS.map(async (name) => {
      try {
        const st = await getJSON('/relays/' + name + '/status');
        // A relay process that serves several databases answers
        // {"ready": ..., "relays": [...]}: one card per database.
        const all = Array.isArray(st.relays) ? st.relays : [st];
        return all.map((s) => relayCard(all.length > 1 ? name + ' · ' + (s.name || s.slot) : name, s));
      } catch (e) {
        return [relayCard(name, null, e.message)];
      }
    }));
    $('#relays').replaceChildren(...cards.flat());
    setTimeout(pollRelays, document.hidden ? HIDDEN_POLL_MS : RELAY_POLL_MS);
  }

  // -------------------------------------------------------------- timeline

  // Where "open the trace" points: ?jaeger=<Jaeger UI base URL>, else the
  // gateway's /jaeger (compose's Kong routes it to Jaeger's UI, as the
  // local gateway does with SAGA_DEMO_JAEGER_URL). Only a path of this
  // origin or an http(s) URL is taken: a javascript: URL in a link would
  // run on this page.
  function jaegerBase(v) {
    if (!v) return '/jaeger';
    if (v.startsWith('/') && !v.startsWith('//')) return v.replace(/\/+$/, '');
    try {
      const u = new URL(v);
      if (u.protocol === 'http:' || u.protocol === 'https:') return u.href.replace(/\/+$/, '');
    } catch (e) { /* not a URL */ }
    console.warn('dashboard: ignoring ?jaeger=' + v + ': want a path or an http(s) URL');
    return '/jaeger';
  }
  const JAEGER = jaegerBase(new URLSearchParams(location.search).get('jaeger'));
  const SERVICES = ['order', 'stock', 'payment'];
  let timelineOrder = null;
  let timelineTimer = null;

  function clock(iso) {
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return iso;
    return d.toLocaleTimeString([], {hour12: false}) + '.' + String(d.getMilliseconds()).padStart(3, '0');
  }

  // hops joins the three services' answers: each outbox row written, each
  // message consumed (its message_id is the row's id), in time order.
  function hops(parts) {
    const written = new Map();
    const out = [];
    for (const p of parts) {
      for (const o of p.outbox) {
        written.set(o.id, {service: p.service, at: Date.parse(o.created_at)});
        out.push({kind: 'written', service: p.service, event: o.event_type, key: o.routing_key, at: o.created_at, id: o.id, trace: o.trace_id});
      }
    }
    for (const p of parts) {
      for (const i of p.inbox) {
        const w = written.get(i.message_id);
        out.push({kind: 'consumed', service: p.service, event: i.event_type, queue: i.queue, at: i.received_at, id: i.message_id,
          from: w ? w.service : null, after: w ? Date.parse(i.received_at) - w.at : null, duplicates: i.duplicates});
      }
    }
    // At the same instant (a transaction's rows share its start time):
    // within one service, what it consumed came first, then what it wrote
    // in that transaction; across services, a message is written before
    // it is consumed.
    const tie = (a, b) => {
      if (a.kind === b.kind) return 0;
      const first = a.service === b.service ? 'consumed' : 'written';
      return a.kind === first ? -1 : 1;
    };
    out.sort((a, b) => Date.parse(a.at) - Date.parse(b.at) || tie(a, b));
    return out;
  }

  function hopItem(h) {
    const what = h.kind === 'written'
      ? [el('b', null, h.service), ' wrote ', el('code', null, h.event), muted(' → ' + h.key)]
      : [el('b', null, h.service), ' consumed ', el('code', null, h.event),
        muted(' from ' + (h.from || '?') + ' via ' + h.queue + (h.after !== null ? ', ' + Math.max(0, h.after) + ' ms after it was written' : ''))];
    const dup = h.duplicates > 0
      ? el('span', {class: 'dup'}, h.duplicates + (h.duplicates === 1 ? ' duplicate' : ' duplicates') + ' deduplicated')
      : null;
    return el('li', {class: 'hop hop-' + h.kind, 'data-kind': h.kind, 'data-service': h.service, 'data-event': h.event, 'data-id': h.id},
      el('time', {datetime: h.at}, clock(h.at)), el('span', {class: 'hop-what'}, ...what), dup);
  }

  async function renderTimeline() {
    const id = timelineOrder;
    if (id === null) return;
    try {
      const parts = await Promise.all(SERVICES.map((s) => getJSON('/' + s + '/api/v1/sagas/' + encodeURIComponent(id) + '/')));
      if (id !== timelineOrder) return; // another order was opened meanwhile
      const list = hops(parts);
      $('#timeline-hops').replaceChildren(...list.map(hopItem));
      $('#timeline-empty').hidden = list.length > 0;
      const trace = list.find((h) => h.trace);
      const a = $('#timeline-trace');
      a.hidden = !trace;
      if (trace) a.href = JAEGER + '/trace/' + trace.trace;
      $('#timeline').dataset.hops = String(list.length);
    } catch (e) {
      $('#timeline-empty').hidden = false;
      $('#timeline-empty').textContent = 'Could not read the saga: ' + e.message;
    } finally {
      clearTimeout(timelineTimer);
      if (id === timelineOrder) timelineTimer = setTimeout(renderTimeline, document.hidden ? HIDDEN_POLL_MS : 1000);
    }
  }

  function openTimeline(id) {
    timelineOrder = String(id);
    $('#timeline-title').textContent = 'Saga of order #' + timelineOrder;
    $('#timeline').dataset.orderId = timelineOrder;
    $('#timeline').dataset.hops = '';
    $('#timeline-hops').replaceChildren();
    $('#timeline-empty').textContent = 'No message of this order yet.';
    $('#timeline').hidden = false;
    renderTimeline();
  }

  function closeTimeline() {
    timelineOrder = null;
    clearTimeout(timelineTimer);
    $('#timeline').hidden = true;
  }

  // ---------------------------------------------------------------- orders

  function clearErrors() {
    for (const f of FIELDS) {
      $('#err-' + f).textContent = '';
      $('#f-' + f).removeAttribute('aria-invalid');
    }
    $('#err-form').textContent = '';
  }

  // showErrors puts the API's {"field": ["message", ...]} next to the
  // fields; what belongs to no field (detail, non_field_errors, status)
  // goes under the form.
  function showErrors(body) {
    const other = [];
    for (const [k, v] of Object.entries(body || {})) {
      const text = Array.isArray(v) ? v.join(' ') : String(v);
      const slot = document.getElementById('err-' + k);
      if (slot && FIELDS.includes(k)) {
        slot.textContent = text;
        $('#f-' + k).setAttribute('aria-invalid', 'true');
      } else {
        other.push(k === 'detail' || k === 'non_field_errors' ? text : k + ': ' + text);
      }
    }
    $('#err-form').textContent = other.join(' ');
  }

  function flash(kind, text, orderId) {
    const f = $('#flash');
    f.dataset.kind = kind;
    f.textContent = text;
    if (orderId !== undefined) f.dataset.orderId = orderId;
  }

  let seq = 0;

  async function placeOrder(order, fromForm) {
    clearErrors();
    const n = ++seq;
    flash('info', 'Placing the order…');
    let resp, body;
    try {
      resp = await fetch(API + '/order/api/v1/orders/', {
        method: 'POST',
        headers: {'Content-Type': 'application/json', Accept: 'application/json'},
        body: JSON.stringify(order),
      });
      body = await resp.json().catch(() => null);
    } catch (e) {
      flash('error', 'The API did not answer: ' + e.message);
      return;
    }
    if (n !== seq) return; // a later click took over the message
    if (resp.status === 201 && body) {
      lastCreated = String(body.order_id);
      flash('ok', `Order #${body.order_id} created: watch it move through the saga below.`, lastCreated);
      $('#flash').dataset.seq = String(n);
      return;
    }
    if (resp.status === 400) {
      if (fromForm) showErrors(body);
      flash('error', 'The API rejected the order' + (fromForm ? ': see the fields.' : ': ' + JSON.stringify(body)));
      return;
    }
    flash('error', `The API answered HTTP ${resp.status}` + (body ? ': ' + JSON.stringify(body) : ''));
  }

  // formOrder sends what was typed, as the API's users would: strings for
  // the text fields, an integer quantity when it is one (else the text, for
  // the API to judge); an empty field is left out, so the API says it is
  // required.
  function formOrder() {
    const order = {};
    for (const f of FIELDS) {
      const v = $('#f-' + f).value.trim();
      if (v === '') continue;
      order[f] = f === 'quantity' && /^\d+$/.test(v) ? Number(v) : v;
    }
    return order;
  }

  function init() {
    for (const b of document.querySelectorAll('.scenario')) {
      b.addEventListener('click', () => placeOrder({
        customer_id: '1',
        product_id: '1',
        amount: b.dataset.amount,
        quantity: Number(b.dataset.quantity),
      }, false));
    }
    $('#order-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      placeOrder(formOrder(), true);
    });
    $('#orders tbody').addEventListener('click', (ev) => {
      const tr = ev.target.closest('tr[data-order-id]');
      if (tr) openTimeline(tr.dataset.orderId);
    });
    $('#timeline-close').addEventListener('click', closeTimeline);
    pollSaga();
    pollRelays();
  }

  init();
})();
