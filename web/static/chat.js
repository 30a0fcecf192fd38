// Whisper chat client: room list, one pane per joined room, one WebSocket
// speaking protocol v1 (see DESIGN.md §2). User text only ever reaches the DOM
// through textContent or attributes, never as HTML.

const MSG = { MESSAGE: 0, WARNING: 1, ALERT: 2, MUTED: 3, ENTER: 4, LEAVE: 5 };
const ROOM_USERS = 6;
const BACKOFF_START_MS = 1000;
const BACKOFF_MAX_MS = 30000;
const USERS_REFRESH_DELAY_MS = 250;
// A command whose outcome has not arrived by then means the connection is stuck.
const REPLY_TIMEOUT_MS = 15000;
const RECONNECTED_TEXT = 'Reconnected — messages sent while you were offline are not shown.';

const ERROR_TEXT = {
  ROOM_INVALID: 'That room does not exist.',
  ROOM_ACCESS_DENIED: 'This room is for staff only, or you have not joined it.',
  USER_HAS_TO_LOGIN: 'Your session has ended. Please log in again.',
  BAD_REQUEST: 'The server did not understand that request.',
  UNKNOWN_COMMAND: 'The server does not know that command.',
  MESSAGE_TOO_LARGE: 'Message too long.',
  TOO_MANY_ROOMS: 'You have joined too many rooms. Leave one first.',
  RATE_LIMITED: 'Slow down.',
  UNAVAILABLE: 'The server could not deliver that, try again.',
};

const state = {
  me: null,              // {id, username, name, is_staff}
  rooms: new Map(),      // room id (string) -> {id, title, staff_only}
  panes: new Map(),      // room id (string) -> pane record, one per joined room
  socket: null,
  backoffMs: BACKOFF_START_MS,
  // Outgoing commands, one at a time: see "Command queue" below.
  queue: [],             // commands waiting their turn: {command, room, message?, rejoin?}
  inFlight: null,        // the one command sent and awaiting its outcome, or null
  inFlightTimer: 0,
  rejoinErrors: [],      // rooms refused on the last reconnect, shown together
};

const $ = (selector) => document.querySelector(selector);

// Build an element; `text` goes in as textContent, never parsed as HTML.
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

function hhmm(date) {
  return `${String(date.getHours()).padStart(2, '0')}:${String(date.getMinutes()).padStart(2, '0')}`;
}

let statusTimer = 0;

// Connection state, or an error that fades back to the connection state.
function setStatus(text, kind) {
  const status = $('#status');
  status.textContent = text;
  status.title = text; // the pill may cut long text short
  status.dataset.state = kind;
  clearTimeout(statusTimer);
  if (kind === 'error') {
    statusTimer = setTimeout(() => {
      if (state.socket && state.socket.readyState === WebSocket.OPEN) setStatus('Connected', 'open');
    }, 6000);
  }
}

function goToLogin() {
  location.assign('/accounts/login/?next=/');
}

async function fetchJson(url) {
  const response = await fetch(url, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
  if (response.status === 401 || response.status === 403) {
    goToLogin();
    throw new Error('not logged in');
  }
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

// ---- Room list ------------------------------------------------------------

function renderRoomList() {
  const list = $('#room-list');
  list.replaceChildren();
  for (const room of state.rooms.values()) {
    const button = el('button', {
      type: 'button', class: 'room-item', 'aria-pressed': 'false', dataset: { roomId: room.id },
    }, el('span', { class: 'room-title', text: room.title }));
    if (room.staff_only) {
      button.append(el('span', { class: 'badge', text: 'staff', title: 'Staff-only room' }));
    }
    button.addEventListener('click', () => toggleRoom(room.id));
    list.append(el('li', {}, button));
  }
  if (state.rooms.size === 0) {
    list.append(el('li', { class: 'hint', text: 'No rooms yet.' }));
  }
  for (const id of state.panes.keys()) markRoom(id, 'joined');
}

function roomButton(id) {
  return $(`#room-list button[data-room-id="${CSS.escape(id)}"]`);
}

// Reflect a room's state ('joined', 'pending' or 'none') on its sidebar button.
function markRoom(id, mark) {
  const button = roomButton(id);
  if (!button) return;
  button.classList.toggle('joined', mark === 'joined');
  button.classList.toggle('pending', mark === 'pending');
  button.setAttribute('aria-pressed', String(mark === 'joined'));
}

function roomTitle(id) {
  const room = state.rooms.get(id);
  if (room) return room.title;
  const pane = state.panes.get(id);
  return pane ? pane.title.textContent : `Room ${id}`;
}

function toggleRoom(id) {
  // A join already on its way: its reply or error settles the button.
  if (joinPending(id)) return;
  const pane = state.panes.get(id);
  if (pane) {
    leaveRoom(id);
  } else if (enqueue({ command: 'join', room: id })) {
    markRoom(id, 'pending');
  } else {
    setStatus('Not connected. Try again in a moment.', 'error');
  }
}

// ---- Panes ----------------------------------------------------------------

function openPane(id, title) {
  let pane = state.panes.get(id);
  if (pane) {
    pane.title.textContent = title;
    return pane;
  }
  const titleNode = el('h2', { class: 'pane-title', text: title });
  const online = el('ul', { class: 'online-list', 'aria-label': 'Online' });
  const onlineCount = el('span', { class: 'online-count' });
  const leaveButton = el('button', { type: 'button', class: 'leave-button', text: 'Leave' });
  const error = el('p', { class: 'pane-error error', role: 'alert' });
  const messages = el('ol', { class: 'messages', 'aria-live': 'polite' });
  const input = el('input', {
    type: 'text', class: 'send-input', name: 'message', autocomplete: 'off',
    placeholder: `Message ${title}`, 'aria-label': `Message ${title}`,
  });
  const form = el('form', { class: 'send-form' },
    input, el('button', { type: 'submit', class: 'primary', text: 'Send' }));
  const section = el('section', { class: 'room-pane', dataset: { roomPane: id }, 'aria-label': title },
    el('header', { class: 'pane-header' },
      el('div', { class: 'pane-heading' }, titleNode, onlineCount),
      leaveButton),
    online, error, messages, form);

  pane = { id, section, title: titleNode, online, onlineCount, error, messages, input,
    errorTimer: 0, usersTimer: 0, leaving: false };
  leaveButton.addEventListener('click', () => leaveRoom(id));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    sendMessage(pane);
  });
  state.panes.set(id, pane);
  $('#rooms-panes').append(section);
  markRoom(id, 'joined');
  input.focus();
  return pane;
}

function closePane(id) {
  const pane = state.panes.get(id);
  if (pane) {
    clearTimeout(pane.errorTimer);
    clearTimeout(pane.usersTimer);
    pane.section.remove();
    state.panes.delete(id);
  }
  markRoom(id, 'none');
}

function leaveRoom(id) {
  const pane = state.panes.get(id);
  if (!pane || pane.leaving) return;
  if (enqueue({ command: 'leave', room: id })) {
    pane.leaving = true;
    pane.section.classList.add('leaving');
  } else {
    // Offline: the server already dropped us from the room when the socket closed.
    closePane(id);
  }
}

function sendMessage(pane) {
  const text = pane.input.value;
  if (!text.trim() || pane.leaving) return;
  if (enqueue({ command: 'send', room: pane.id, message: text })) {
    pane.input.value = '';
  } else {
    showPaneError(pane, 'Not connected. Your message was not sent.');
  }
}

function showPaneError(pane, text) {
  clearTimeout(pane.errorTimer);
  pane.error.textContent = text;
  pane.errorTimer = setTimeout(() => { pane.error.textContent = ''; }, 6000);
}

// Keep the view pinned to the newest message unless the user scrolled up.
function appendLine(pane, line) {
  const list = pane.messages;
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.append(line);
  if (atBottom) list.scrollTop = list.scrollHeight;
}

function addMessage(pane, username, message) {
  const now = new Date();
  const own = state.me && username === state.me.username;
  appendLine(pane, el('li', { class: own ? 'message own' : 'message' },
    el('span', { class: 'msg-user', text: username }),
    el('time', { class: 'msg-time', datetime: now.toISOString(), text: hhmm(now) }),
    el('p', { class: 'msg-text', text: message })));
}

function addNotice(pane, kind, text) {
  const now = new Date();
  appendLine(pane, el('li', { class: `notice notice-${kind}` },
    el('span', { class: 'notice-text', text }),
    el('time', { class: 'msg-time', datetime: now.toISOString(), text: hhmm(now) })));
}

function renderUsers(pane, users) {
  const online = Object.values(users || {})
    .filter((user) => user && !user.left)
    .sort((a, b) => String(a.username).localeCompare(String(b.username)));
  pane.online.replaceChildren(...online.map((user) => el('li', {
    class: state.me && user.username === state.me.username ? 'online-user me' : 'online-user',
    text: user.username,
    title: user.name || user.username,
  })));
  pane.onlineCount.textContent = `${online.length} online`;
}

// ENTER/LEAVE bursts cause one room_users request, not one each.
function refreshUsersSoon(pane) {
  clearTimeout(pane.usersTimer);
  pane.usersTimer = setTimeout(() => {
    if (state.panes.get(pane.id) === pane && !pane.leaving) requestUsers(pane.id);
  }, USERS_REFRESH_DELAY_MS);
}

function requestUsers(id) {
  const queued = state.queue.some((entry) => entry.command === 'room_users' && entry.room === id);
  if (!queued) enqueue({ command: 'room_users', room: id });
}

// ---- Command queue ------------------------------------------------------------
//
// A v1 error, {"error":CODE}, names neither the command nor the room it answers.
// The server handles a connection's frames in order, so the client keeps at most
// one command awaiting its outcome (state.inFlight) and holds the others in
// state.queue until that outcome arrives; any error then belongs to the command
// in flight. The outcome of each command:
//   join        {"join":ID,"title":T}              or an error
//   leave       {"leave":ID}                       or an error
//   room_users  {"type":6,"room":ID,...}           or an error
//   send        its own echo: {"msg_type":0} in that room from this user with
//               the same text (a successful send has no reply, but the sender
//               always gets the broadcast), or an error; the same text sent to
//               the same room at the same moment by this user's other tab could
//               stand in for it, harmless unless this send then fails
// Waiting for the echo, rather than for a quiet spell after a send, costs
// nothing when all goes well and never lets a late error be blamed on the next
// command. Should an outcome never come (a stuck connection), the connection
// is dropped after REPLY_TIMEOUT_MS and the usual reconnect starts afresh:
// queue emptied, open rooms re-joined.
//
// Queue entries keep room ids as strings, like state.panes; the wire gets numbers.

// Queue a command; false when not connected (nothing is queued then).
function enqueue(entry) {
  const socket = state.socket;
  if (!socket || socket.readyState !== WebSocket.OPEN) return false;
  state.queue.push(entry);
  pump();
  return true;
}

function joinPending(id) {
  const isJoin = (entry) => entry && entry.command === 'join' && entry.room === id;
  return isJoin(state.inFlight) || state.queue.some(isJoin);
}

// Send the next queued command if none is awaiting its outcome.
function pump() {
  const socket = state.socket;
  if (state.inFlight || !socket || socket.readyState !== WebSocket.OPEN) return;
  while (state.queue.length) {
    const entry = state.queue.shift();
    // Commands about a pane closed while they waited (e.g. a refused rejoin) are moot.
    if (entry.command !== 'join' && !state.panes.has(entry.room)) continue;
    const wire = { command: entry.command, room: Number(entry.room) };
    if (entry.command === 'send') wire.message = entry.message;
    state.inFlight = entry;
    state.inFlightTimer = setTimeout(() => {
      if (state.inFlight === entry && state.socket === socket) dropConnection(socket);
    }, REPLY_TIMEOUT_MS);
    socket.send(JSON.stringify(wire));
    return;
  }
}

// The command in flight, if `matches` says this frame is its outcome; that
// command is then finished (the next one goes out at the end of handleFrame).
function settle(matches) {
  const entry = state.inFlight;
  if (!entry || !matches(entry)) return null;
  clearTimeout(state.inFlightTimer);
  state.inFlight = null;
  return entry;
}

// Forget every command of a connection that is gone. A message that never left
// the queue goes back into its input; one in flight may or may not have arrived.
function resetQueue() {
  clearTimeout(state.inFlightTimer);
  const entries = state.inFlight ? [state.inFlight, ...state.queue] : state.queue;
  const unsent = state.inFlight ? state.queue : entries;
  state.inFlight = null;
  state.queue = [];
  for (const entry of entries) {
    if (entry.command === 'join' && !state.panes.has(entry.room)) markRoom(entry.room, 'none');
  }
  for (const entry of unsent) {
    const pane = state.panes.get(entry.room);
    if (entry.command === 'send' && pane && !pane.input.value) {
      pane.input.value = entry.message;
      showPaneError(pane, 'Not connected. Your message was not sent.');
    }
  }
}

// ---- Socket -----------------------------------------------------------------

// Give up on a connection (closed, or stuck) and start reconnecting.
function dropConnection(socket) {
  if (state.socket !== socket) return;
  state.socket = null;
  socket.close();
  resetQueue();
  scheduleReconnect();
}

function connect() {
  setStatus(state.backoffMs > BACKOFF_START_MS ? 'Reconnecting…' : 'Connecting…', 'connecting');
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const socket = new WebSocket(`${scheme}://${location.host}/chat/stream/`);
  state.socket = socket;

  socket.addEventListener('open', () => {
    state.backoffMs = BACKOFF_START_MS;
    setStatus('Connected', 'open');
    // Re-join whatever was open before the connection dropped, one at a time
    // through the queue so a refusal is pinned on the right room.
    state.rejoinErrors = [];
    for (const pane of [...state.panes.values()]) {
      if (pane.leaving) closePane(pane.id);
      else enqueue({ command: 'join', room: pane.id, rejoin: true });
    }
  });
  socket.addEventListener('message', (event) => {
    if (state.socket !== socket) return;
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return;
    }
    if (frame && typeof frame === 'object') handleFrame(frame);
  });
  socket.addEventListener('close', () => dropConnection(socket));
}

async function scheduleReconnect() {
  setStatus('Reconnecting…', 'closed');
  const delay = state.backoffMs;
  state.backoffMs = Math.min(state.backoffMs * 2, BACKOFF_MAX_MS);
  await new Promise((resolve) => setTimeout(resolve, delay));
  // A dead session makes every upgrade fail; send the user to log in instead of looping.
  try {
    await fetchJson('/api/me');
  } catch (error) {
    if (error.message === 'not logged in') return;
  }
  connect();
}

function handleFrame(frame) {
  handleFrameOf(frame);
  pump();
}

function handleFrameOf(frame) {
  if ('error' in frame) return handleError(String(frame.error), settle(() => true));
  if ('join' in frame) {
    const id = String(frame.join);
    const entry = settle((e) => e.command === 'join' && e.room === id);
    const pane = openPane(id, String(frame.title ?? id));
    if (entry && entry.rejoin) addNotice(pane, 'reconnect', RECONNECTED_TEXT);
    return requestUsers(id);
  }
  if ('leave' in frame) {
    const id = String(frame.leave);
    settle((e) => e.command === 'leave' && e.room === id);
    return closePane(id);
  }

  const id = String(frame.room);
  const username = String(frame.username ?? '');
  if (frame.type === ROOM_USERS) {
    settle((e) => e.command === 'room_users' && e.room === id);
  } else if (frame.msg_type === MSG.MESSAGE && username === state.me?.username) {
    settle((e) => e.command === 'send' && e.room === id && e.message === frame.message);
  }
  const pane = state.panes.get(id);
  if (!pane) return;
  if (frame.type === ROOM_USERS) return renderUsers(pane, frame.data && frame.data.users);

  switch (frame.msg_type) {
    case MSG.MESSAGE:
      return addMessage(pane, username, String(frame.message ?? ''));
    case MSG.ENTER:
      addNotice(pane, 'enter', `${username} joined`);
      return refreshUsersSoon(pane);
    case MSG.LEAVE:
      if (pane.leaving && username === state.me?.username) return;
      addNotice(pane, 'leave', `${username} left`);
      return refreshUsersSoon(pane);
    case MSG.WARNING:
    case MSG.ALERT:
    case MSG.MUTED:
      return addNotice(pane, 'warning', String(frame.message ?? ''));
    default:
      return undefined;
  }
}

// What to say when a join is refused; names the room, which has no pane to show it in.
function joinErrorText(code, id, rejoin) {
  const title = `“${roomTitle(id)}”`;
  if (code === 'ROOM_ACCESS_DENIED') return `${title} is for staff only.`;
  if (code === 'ROOM_INVALID') return rejoin ? `${title} no longer exists.` : 'That room no longer exists.';
  const text = ERROR_TEXT[code] || `Error: ${code}`;
  return rejoin ? `Could not rejoin ${title}. ${text}` : `Could not join ${title}. ${text}`;
}

// `entry` is the command the error answers (null if none was in flight).
function handleError(code, entry) {
  const text = ERROR_TEXT[code] || `Error: ${code}`;
  if (!entry) {
    setStatus(text, 'error');
    return;
  }
  const id = entry.room;
  if (entry.command === 'join') {
    const message = joinErrorText(code, id, entry.rejoin);
    if (entry.rejoin) {
      // The server no longer has us in this room: a pane left open would be a lie.
      closePane(id);
      state.rejoinErrors.push(message);
      setStatus(state.rejoinErrors.join(' '), 'error');
    } else {
      markRoom(id, state.panes.has(id) ? 'joined' : 'none');
      setStatus(message, 'error');
    }
    return;
  }
  const pane = state.panes.get(id);
  if (!pane) {
    setStatus(text, 'error');
    return;
  }
  if (entry.command === 'leave') {
    pane.leaving = false;
    pane.section.classList.remove('leaving');
  }
  // Give the text back so a rejected message can be edited or retried.
  if (entry.command === 'send' && !pane.input.value) pane.input.value = entry.message;
  showPaneError(pane, text);
}

// ---- Start ------------------------------------------------------------------

async function start() {
  try {
    const [me, rooms] = await Promise.all([fetchJson('/api/me'), fetchJson('/api/rooms')]);
    state.me = me;
    for (const room of rooms) state.rooms.set(String(room.id), { ...room, id: String(room.id) });
    $('#whoami').textContent = me.username;
  } catch (error) {
    if (error.message !== 'not logged in') setStatus('Could not load rooms. Reload to try again.', 'error');
    return;
  }
  renderRoomList();
  connect();
}

start();
