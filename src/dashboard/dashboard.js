// Skiff's dashboard. Polls the manager's API every 2 s (health, nodes, tasks, recent events) and
// updates the page in place: rows and cards are keyed (task id, node name, event seq), so nothing
// is rebuilt, nothing flickers and focus stays where it is. No framework, no build step, nothing
// from another origin. The cluster token, when the manager asks for one (401), is asked once,
// kept in sessionStorage and sent as `Authorization: Bearer`, never in a URL.
'use strict';
(() => {
  const POLL_MS = 2000;
  const TOKEN_KEY = 'skiff.token';
  const MAX_LOG_CHARS = 512 * 1024;
  const MAX_FINISHED = 100;
  const FINISHED = new Set(['Stopped', 'Completed', 'Failed']);
  const $ = (id) => document.getElementById(id);

  // ----------------------------------------------------------------------------------------
  // The API

  let memoryToken = null; // when the browser refuses storage
  function getToken() {
    try { return sessionStorage.getItem(TOKEN_KEY) || memoryToken; } catch { return memoryToken; }
  }
  function setToken(t) {
    memoryToken = t;
    try { sessionStorage.setItem(TOKEN_KEY, t); } catch { /* kept in memory only */ }
  }

  class NeedToken extends Error {}
  class Unreachable extends Error {}
  class Refused extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  let clockSkew = 0; // the manager's clock minus ours, from its Date headers (ages use its time)

  async function api(path, options = {}) {
    const headers = new Headers(options.headers || {});
    const token = getToken();
    if (token) headers.set('Authorization', 'Bearer ' + token);
    let resp;
    try {
      resp = await fetch(path, { ...options, headers, cache: 'no-store', credentials: 'omit', redirect: 'error' });
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      throw new Unreachable(e.message || 'network error');
    }
    const date = Date.parse(resp.headers.get('Date') || '');
    // Date has whole seconds: only a real difference moves the skew, so ages do not jitter
    if (!Number.isNaN(date) && Math.abs(date - Date.now() - clockSkew) > 1500) clockSkew = date - Date.now();
    if (resp.status === 401) {
      askToken(token ? 'The manager refused that token.' : null);
      throw new NeedToken('the manager needs the cluster token');
    }
    if (!resp.ok) throw new Refused(resp.status, await errorText(resp));
    return resp;
  }

  async function errorText(resp) {
    try {
      const body = await resp.json();
      if (body && typeof body.error === 'string') return body.error;
    } catch { /* not the error shape */ }
    return resp.statusText || 'error';
  }

  const getJson = async (path) => (await api(path)).json();

  /** Every task, page after page (the manager gives at most 1,000 a page). */
  async function allTasks() {
    let all = [];
    let next = null;
    for (let page = 0; page < 20; page++) {
      const resp = await api('/v1/tasks?limit=1000' + (next ? '&next=' + encodeURIComponent(next) : ''));
      all = all.concat(await resp.json());
      next = resp.headers.get('Skiff-Next');
      if (!next) break;
    }
    return all;
  }

  function describe(e) {
    if (e instanceof Refused) return `the manager answered ${e.status}: ${e.message}`;
    if (e instanceof Unreachable) return `the manager is unreachable (${e.message})`;
    return e && e.message ? e.message : String(e);
  }

  // ----------------------------------------------------------------------------------------
  // Small DOM helpers: build once, then change only what changed

  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k.startsWith('data-') || k.startsWith('aria-') || k === 'role') el.setAttribute(k, v);
      else el[k] = v;
    }
    for (const c of children) if (c != null) el.append(c);
    return el;
  }
  function setText(el, s) {
    s = s == null ? '' : String(s);
    if (el.textContent !== s) el.textContent = s;
  }
  function setClass(el, c) { if (el.className !== c) el.className = c; }
  function setShown(el, yes) { if (el.hidden === yes) el.hidden = !yes; }
  function setAttr(el, name, value) { if (el.getAttribute(name) !== value) el.setAttribute(name, value); }

  /** Puts one element per item in `container`, in order, reusing the element of each key. */
  function sync(container, items, keyOf, create, update) {
    const before = container.keyed || new Map();
    const now = new Map();
    let cursor = container.firstElementChild;
    for (const item of items) {
      const key = keyOf(item);
      let el = before.get(key);
      if (!el) {
        el = create(item);
        el.dataset.key = key;
      }
      update(el, item);
      now.set(key, el);
      if (el === cursor) cursor = cursor.nextElementSibling;
      else container.insertBefore(el, cursor);
    }
    for (const [key, el] of before) if (!now.has(key)) el.remove();
    container.keyed = now;
  }

  // ----------------------------------------------------------------------------------------
  // Formatting

  const pad = (n) => String(n).padStart(2, '0');
  const clock = (d) => `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  const managerNow = () => Date.now() + clockSkew;

  function age(ts) {
    const t = Date.parse(ts || '');
    if (Number.isNaN(t)) return '—';
    let s = Math.max(0, Math.round((managerNow() - t) / 1000));
    if (s < 60) return `${s}s`;
    let m = Math.floor(s / 60);
    if (m < 60) return `${m}m ${pad(s % 60)}s`;
    const hrs = Math.floor(m / 60);
    m %= 60;
    if (hrs < 48) return `${hrs}h ${pad(m)}m`;
    return `${Math.floor(hrs / 24)}d ${hrs % 24}h`;
  }
  function mb(n) {
    if (n == null) return '?';
    return n >= 1024 ? `${(n / 1024).toFixed(n >= 10240 ? 0 : 1)} GB` : `${Math.round(n)} MB`;
  }
  function cores(n) {
    if (n == null) return '?';
    return Number.isInteger(n) ? String(n) : n.toFixed(n < 10 ? 2 : 1).replace(/\.?0+$/, '');
  }
  const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;
  const shortId = (id) => String(id || '').slice(0, 8);

  // ----------------------------------------------------------------------------------------
  // Header: summary and whether the manager answers

  let failingSince = null;
  let noticeTimer = null;

  function setStatus(message, down) {
    const el = $('status');
    setText(el, message);
    setClass(el, down ? 'status down' : 'status');
    document.body.classList.toggle('stale', down);
  }

  function notice(message, kind) {
    const el = $('notice');
    setText(el, message);
    setClass(el, `notice ${kind}`);
    el.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { el.hidden = true; }, 10000);
  }

  function renderSummary(health) {
    const parts = [];
    if (health.version) parts.push(`v${health.version}`);
    if (health.scheduler) parts.push(`scheduler ${health.scheduler}`);
    if (health.storage) parts.push(`${health.storage} store`);
    if (health.nodes_total != null) parts.push(`${health.nodes_up}/${health.nodes_total} nodes up`);
    if (health.tasks != null) parts.push(plural(health.tasks, 'unfinished task', 'unfinished tasks'));
    setText($('summary'), parts.join(' · '));
  }

  // ----------------------------------------------------------------------------------------
  // Nodes

  let nodesByName = new Map();

  /** The host part of HOST:PORT (brackets kept off an IPv6 address). */
  function hostOf(address) {
    const a = String(address || '');
    if (a.startsWith('[')) return a.slice(1, a.indexOf(']'));
    const i = a.lastIndexOf(':');
    return i > 0 ? a.slice(0, i) : a;
  }

  function meter(label) {
    const alloc = h('span', { class: 'alloc' });
    const used = h('span', { class: 'used' });
    const line = h('div', { class: 'meter' },
      h('span', { class: 'meter-label', text: label }),
      h('div', { class: 'bar', 'aria-hidden': 'true' }, alloc, used),
      h('span', { class: 'meter-text' }));
    line.parts = { alloc, used, text: line.lastElementChild };
    return line;
  }

  function setMeter(m, allocated, used, capacity, unit) {
    const pct = (v) => (capacity > 0 && v != null ? `${Math.min(100, (100 * v) / capacity).toFixed(1)}%` : '0%');
    if (m.parts.alloc.style.width !== pct(allocated)) m.parts.alloc.style.width = pct(allocated);
    if (m.parts.used.style.width !== pct(used)) m.parts.used.style.width = pct(used);
    const capText = capacity == null ? 'capacity not known yet' : `of ${unit(capacity)}`;
    const usedText = used == null ? '' : ` · ${unit(used)} used`;
    setText(m.parts.text, `${unit(allocated)} allocated ${capText}${usedText}`);
  }

  function createNode() {
    const card = h('article', { class: 'node' });
    const p = {
      name: h('h3'),
      status: h('span', { class: 'badge' }),
      availability: h('span', { class: 'badge' }),
      meta: h('p', { class: 'node-meta' }),
      error: h('p', { class: 'node-error' }),
      drain: h('p', { class: 'drain-info' }),
      cpu: meter('CPU'),
      memory: meter('Memory'),
      disk: meter('Disk'),
      action: h('button', { type: 'button', 'data-action': 'drain' }),
    };
    card.append(
      h('div', { class: 'node-head' }, p.name, p.status, p.availability),
      p.meta, p.error, p.drain, p.cpu, p.memory, p.disk,
      h('div', { class: 'node-actions' }, p.action));
    card.parts = p;
    return card;
  }

  function updateNode(card, n) {
    const p = card.parts;
    const availability = n.availability || 'active';
    setText(p.name, n.name);
    setText(p.status, n.status);
    setClass(p.status, `badge s-${n.status}`);
    setText(p.availability, availability);
    setClass(p.availability, `badge s-${availability}`);
    const meta = [n.address, plural(n.tasks, 'task', 'tasks')];
    meta.push(n.last_contact ? `contact ${age(n.last_contact)} ago` : 'never contacted');
    if (n.engine_reachable === false) meta.push('engine unreachable');
    setText(p.meta, meta.join(' · '));
    setText(p.error, n.error || '');
    setShown(p.error, !!n.error);

    const d = n.drain;
    let drainText = '';
    if (d && availability !== 'active') {
      drainText = `${availability}: ${d.moved || 0} moved, ${d.remaining || 0} remaining`;
      if (d.moving) {
        const t = tasksById.get(d.moving);
        drainText += `; moving ${t ? t.name + ' ' : ''}${shortId(d.moving)}`;
      }
      const stuck = d.stuck || [];
      if (stuck.length) drainText += `; stuck: ${stuck.map((s) => `${shortId(s.task)} (${s.reason})`).join(', ')}`;
    }
    setText(p.drain, drainText);
    setShown(p.drain, !!drainText);

    const cap = n.capacity;
    const alloc = n.allocated || { cpus: 0, memory_mb: 0, disk_mb: 0 };
    const s = n.stats;
    setMeter(p.cpu, alloc.cpus, s ? (s.cpu_usage_pct / 100) * s.cpu_count : null, cap && cap.cpus, (v) => `${cores(v)} cores`);
    setMeter(p.memory, alloc.memory_mb, s ? s.memory_total_mb - s.memory_available_mb : null, cap && cap.memory_mb, mb);
    setMeter(p.disk, alloc.disk_mb, s ? s.disk_total_mb - s.disk_free_mb : null, cap && cap.disk_mb, mb);

    const drain = availability === 'active';
    setText(p.action, drain ? 'Drain' : 'Activate');
    setAttr(p.action, 'data-action', drain ? 'drain' : 'activate');
    setAttr(p.action, 'aria-label', `${drain ? 'Drain' : 'Activate'} node ${n.name}`);
    setClass(p.action, drain ? 'danger' : 'primary');
  }

  function renderNodes(nodes) {
    nodesByName = new Map(nodes.map((n) => [n.name, n]));
    const up = nodes.filter((n) => n.status === 'up').length;
    setText($('nodes-count'), nodes.length ? `(${up}/${nodes.length} up)` : '');
    sync($('nodes'), nodes, (n) => n.name, createNode, updateNode);
    setShown($('nodes-empty'), nodes.length === 0);
  }

  // ----------------------------------------------------------------------------------------
  // Tasks

  let tasksById = new Map();

  function cell(label, ...children) { return h('td', { 'data-label': label }, ...children); }

  function createTask() {
    const p = {
      name: h('button', { type: 'button', class: 'link', 'data-action': 'logs' }),
      service: h('span', { class: 'service' }),
      id: h('span', { class: 'task-id mono' }),
      state: h('span', { class: 'badge' }),
      reason: h('span', { class: 'reason' }),
      node: cell('Node'),
      ports: cell('Ports'),
      restarts: cell('Restarts'),
      health: h('span', { class: 'badge' }),
      age: cell('Age'),
      stop: h('button', { type: 'button', class: 'danger', 'data-action': 'stop', text: 'Stop' }),
    };
    setClass(p.ports, 'ports');
    setClass(p.node, 'node-cell');
    const row = h('tr', null,
      cell('Task', p.name, ' ', p.service, p.id),
      cell('State', p.state, p.reason),
      p.node, p.ports, p.restarts,
      cell('Health', p.health),
      p.age,
      h('td', { class: 'actions', 'data-label': '' }, p.stop));
    row.parts = p;
    return row;
  }

  function portLinks(td, t) {
    const node = nodesByName.get(t.node);
    const nodeHost = node ? hostOf(node.address) : location.hostname;
    // the engine publishes a port on IPv4 and IPv6 alike: one link each, in the node's family
    const v6 = nodeHost.includes(':');
    const all = t.ports || [];
    const ports = all.filter((b) => {
      const own = !b.host_ip || b.host_ip.includes(':') === v6;
      return own || !all.some((o) => o !== b && o.container === b.container && o.protocol === b.protocol
        && (!o.host_ip || o.host_ip.includes(':') === v6));
    });
    const sig = JSON.stringify([nodeHost, ports]);
    if (td.sig === sig) return;
    td.sig = sig;
    td.replaceChildren();
    for (const b of ports) {
      const host = b.host_ip && b.host_ip !== '0.0.0.0' && b.host_ip !== '::' ? b.host_ip : nodeHost;
      const shown = host.includes(':') ? `[${host}]` : host;
      const label = `${shown}:${b.host} → ${b.container}`;
      if (b.protocol === 'tcp') {
        td.append(h('a', { href: `http://${shown}:${b.host}/`, target: '_blank', rel: 'noopener noreferrer', text: label }));
      } else {
        td.append(h('span', { text: `${label}/${b.protocol}` }));
      }
    }
    if (!ports.length) td.append(h('span', { text: '—' }));
  }

  function updateTask(row, t) {
    const p = row.parts;
    const finished = FINISHED.has(t.state);
    setClass(row, finished ? 'finished' : '');
    setText(p.name, t.name);
    setAttr(p.name, 'aria-label', `Logs of ${t.name}`);
    setText(p.service, t.service ? `${t.service} v${t.service_version ?? '?'}` : '');
    setText(p.id, shortId(t.id));
    p.id.title = t.id;
    setText(p.state, t.state);
    setClass(p.state, `badge s-${t.state}`);
    let reason = '';
    if (t.state === 'Pending' || t.state === 'Failed') reason = t.error || '';
    if (t.state === 'Failed' && t.exit_code != null && !reason.includes(String(t.exit_code))) {
      reason = `exit code ${t.exit_code}${reason ? ': ' + reason : ''}`;
    }
    setText(p.reason, reason);
    setShown(p.reason, !!reason);
    setText(p.node, t.node || '—');
    portLinks(p.ports, t);
    setText(p.restarts, t.restart_count || 0);
    // a finished task's last verdict says nothing about now
    const health = finished ? ''
      : t.healthy === true ? 'healthy' : t.healthy === false ? 'unhealthy'
      : t.spec && t.spec.health_check ? 'checking' : '';
    setText(p.health, health || '—');
    setClass(p.health, health ? `badge s-${health}` : '');
    setText(p.age, age(t.created_at));
    p.age.title = t.created_at || '';
    const stoppable = !finished && t.desired_state !== 'stopped';
    setShown(p.stop, !finished);
    p.stop.disabled = !stoppable;
    setText(p.stop, stoppable ? 'Stop' : 'Stopping…');
    setAttr(p.stop, 'aria-label', `Stop task ${t.name}`);
  }

  function renderTasks(tasks) {
    tasksById = new Map(tasks.map((t) => [t.id, t]));
    const query = $('filter').value.trim().toLowerCase();
    const withFinished = $('finished').checked;
    const fits = (t) => !query || [t.name, t.id, t.state, t.node, t.service]
      .some((v) => v && String(v).toLowerCase().includes(query));
    const open = tasks.filter((t) => !FINISHED.has(t.state) && fits(t));
    const done = withFinished
      ? tasks.filter((t) => FINISHED.has(t.state) && fits(t))
        .sort((a, b) => String(b.finished_at || '').localeCompare(String(a.finished_at || '')))
        .slice(0, MAX_FINISHED)
      : [];
    const shown = open.concat(done);
    const running = tasks.filter((t) => t.state === 'Running').length;
    setText($('tasks-count'), `(${running} running, ${tasks.length} known)`);
    sync($('tasks').tBodies[0], shown, (t) => t.id, createTask, updateTask);
    setShown($('tasks-empty'), shown.length === 0);
  }

  // ----------------------------------------------------------------------------------------
  // Events

  function createEvent() {
    const li = h('li', null, h('span', { class: 'ev-time' }), h('span', { class: 'ev-subject' }), h('span', { class: 'ev-what' }));
    return li;
  }
  function updateEvent(li, e) {
    const [time, subject, what] = li.children;
    const at = new Date(Date.parse(e.at));
    setText(time, Number.isNaN(at.getTime()) ? '' : clock(at));
    time.title = e.at;
    let who;
    if (e.subject === 'task') {
      const t = tasksById.get(e.task);
      who = t ? `${t.name} ${shortId(e.task)}` : `task ${shortId(e.task)}`;
    } else if (e.subject === 'service') {
      who = `service ${e.service || '?'}`;
    } else {
      who = `node ${e.node || '?'}`;
    }
    setText(subject, who);
    setText(what, `${e.from ? e.from + ' → ' : ''}${e.to}${e.reason ? ' — ' + e.reason : ''}`);
  }
  function renderEvents(events) {
    const newest = events.slice().reverse();
    sync($('events'), newest, (e) => String(e.seq), createEvent, updateEvent);
    setShown($('events-empty'), events.length === 0);
  }

  // ----------------------------------------------------------------------------------------
  // Polling

  let timer = null;
  let inFlight = false;
  let waitingForToken = false;
  let refreshes = 0;
  let lastTasks = [];

  async function refresh() {
    if (inFlight) return;
    inFlight = true;
    clearTimeout(timer);
    try {
      const [health, nodes, tasks, events] = await Promise.all([
        getJson('/v1/health'), getJson('/v1/nodes'), allTasks(), getJson('/v1/events?limit=60'),
      ]);
      failingSince = null;
      waitingForToken = false;
      lastTasks = tasks;
      renderSummary(health);
      renderNodes(nodes);
      renderTasks(tasks);
      renderEvents(events);
      refreshes += 1;
      document.body.dataset.refreshes = String(refreshes);
      setStatus(`live · updated ${clock(new Date())}`, false);
    } catch (e) {
      if (e instanceof NeedToken) {
        waitingForToken = true;
        setStatus('waiting for the cluster token', false);
      } else {
        failingSince = failingSince || new Date();
        const since = clock(failingSince);
        if (e instanceof Unreachable) setStatus(`Manager unreachable since ${since} (${e.message})`, true);
        else if (e instanceof Refused) setStatus(`Manager failing since ${since}: ${describe(e)}`, true);
        else {
          // not the manager's doing: say so rather than blame it
          console.error(e);
          setStatus(`Dashboard error since ${since}: ${describe(e)}`, true);
        }
      }
    } finally {
      inFlight = false;
    }
    // without the token, polling waits for it (the dialog's submit starts it again)
    if (!waitingForToken && !document.hidden) timer = setTimeout(refresh, POLL_MS);
  }

  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && !waitingForToken) refresh();
  });

  // ----------------------------------------------------------------------------------------
  // The token

  function askToken(why) {
    const d = $('login');
    const w = $('login-why');
    setText(w, why || 'This manager needs its cluster token.');
    w.classList.toggle('bad', !!why);
    if (!d.open) {
      $('login-token').value = '';
      d.showModal();
    }
  }

  $('token-button').addEventListener('click', () => askToken(null));

  $('login-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const value = $('login-token').value.trim();
    if (!value) return;
    setToken(value);
    $('login').close();
    waitingForToken = false;
    refresh();
  });

  // ----------------------------------------------------------------------------------------
  // Confirmations and actions

  function confirmAction(title, message, okLabel) {
    return new Promise((resolve) => {
      const d = $('confirm');
      setText($('confirm-title'), title);
      setText($('confirm-text'), message);
      setText($('confirm-ok'), okLabel);
      d.returnValue = '';
      d.addEventListener('close', () => resolve(d.returnValue === 'ok'), { once: true });
      d.showModal();
      $('confirm-cancel').focus();
    });
  }
  $('confirm-ok').addEventListener('click', () => $('confirm').close('ok'));
  $('confirm-cancel').addEventListener('click', () => $('confirm').close('cancel'));

  async function act(what, path, method) {
    try {
      await api(path, { method });
      notice(`${what}: requested.`, 'ok');
    } catch (e) {
      if (!(e instanceof NeedToken)) notice(`${what} failed: ${describe(e)}`, 'bad');
    }
    refresh();
  }

  async function stopTask(t) {
    const where = t.node ? `on ${t.node}` : 'not placed yet';
    const ok = await confirmAction(`Stop ${t.name}?`,
      `Task ${t.id} (${t.state}, ${where}). Its container gets SIGTERM, then SIGKILL after the worker's grace period, and is removed.`,
      'Stop task');
    if (ok) act(`Stop ${t.name}`, `/v1/tasks/${encodeURIComponent(t.id)}`, 'DELETE');
  }

  async function nodeAction(n, action) {
    const drain = action === 'drain';
    const ok = await confirmAction(`${drain ? 'Drain' : 'Activate'} ${n.name}?`,
      drain
        ? `Nothing new is placed on ${n.name}, and its ${plural(n.tasks, 'task is', 'tasks are')} moved to other nodes.`
        : `${n.name} takes new tasks again.`,
      drain ? 'Drain node' : 'Activate node');
    if (ok) act(`${drain ? 'Drain' : 'Activate'} ${n.name}`, `/v1/nodes/${encodeURIComponent(n.name)}/${action}`, 'POST');
  }

  $('tasks').addEventListener('click', (ev) => {
    const button = ev.target.closest('button[data-action]');
    const row = button && button.closest('tr');
    const t = row && tasksById.get(row.dataset.key);
    if (!t) return;
    if (button.dataset.action === 'stop') stopTask(t);
    else if (button.dataset.action === 'logs') openLogs(t);
  });
  $('nodes').addEventListener('click', (ev) => {
    const button = ev.target.closest('button[data-action]');
    const card = button && button.closest('.node');
    const n = card && nodesByName.get(card.dataset.key);
    if (n) nodeAction(n, button.dataset.action);
  });
  $('filter').addEventListener('input', () => renderTasks(lastTasks));
  $('finished').addEventListener('change', () => renderTasks(lastTasks));

  // ----------------------------------------------------------------------------------------
  // Logs: whole for a finished task, followed (a chunked stream read as it comes) while it runs

  let logStream = null;

  function setLogState(s) { setText($('logs-state'), s); }

  function appendLog(s) {
    if (!s) return;
    const pre = $('logs-text');
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
    pre.append(s);
    if (pre.textContent.length > MAX_LOG_CHARS) {
      pre.textContent = '…\n' + pre.textContent.slice(-MAX_LOG_CHARS);
    }
    if (atEnd) pre.scrollTop = pre.scrollHeight;
  }

  function closeLogStream() {
    if (logStream) logStream.abort();
    logStream = null;
  }

  async function openLogs(t) {
    closeLogStream();
    const d = $('logs');
    $('logs-text').textContent = '';
    setText($('logs-title'), `Logs of ${t.name} (${shortId(t.id)})`);
    const follow = t.state === 'Running';
    setLogState(follow ? 'following…' : 'loading…');
    if (!d.open) d.showModal();
    const ctrl = new AbortController();
    logStream = ctrl;
    try {
      const resp = await api(`/v1/tasks/${encodeURIComponent(t.id)}/logs?tail=1000${follow ? '&follow=true' : ''}`,
        { signal: ctrl.signal });
      const reader = resp.body.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        appendLog(decoder.decode(value, { stream: true }));
      }
      appendLog(decoder.decode());
      if (logStream === ctrl) {
        const any = $('logs-text').textContent.length > 0;
        setLogState(!any ? 'no output' : follow ? 'ended (the container stopped, or the stream reached its hour)' : 'end of output');
        logStream = null;
      }
    } catch (e) {
      if (ctrl.signal.aborted) return;
      setLogState(`could not read the logs: ${describe(e)}`);
    }
  }

  $('logs').addEventListener('close', closeLogStream);
  $('logs-close').addEventListener('click', () => $('logs').close());

  refresh();
})();
