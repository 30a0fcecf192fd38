// Whisper chat client: room list, one pane per joined room, one WebSocket
// speaking protocol v1 (see DESIGN.md §2). User text only ever reaches the DOM
// through textContent or attributes, never as HTML.

const MSG = { MESSAGE: 0, WARNING: 1, ALERT: 2, MUTED: 3, ENTER: 4, LEAVE: 5 };
const ROOM_USERS = 6;
const BACKOFF_START_MS = 1000;
const BACKOFF_MAX_MS = 30000;
const USERS_REFRESH_DELAY_MS = 250;

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
  // v1 errors do not name a room, so they are attributed to the last command sent.
  lastCommand: null,
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

function toggleRoom(id) {
  const pane = state.panes.get(id);
  if (pane) {
    leaveRoom(id);
  } else if (sendCommand({ command: 'join', room: Number(id) })) {
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
  if (!pane) return;
  if (sendCommand({ command: 'leave', room: Number(id) })) {
    pane.leaving = true;
    pane.section.classList.add('leaving');
  } else {
    // Offline: the server already dropped us from the room when the socket closed.
    closePane(id);
  }
}

function sendMessage(pane) {
  const text = pane.input.value;
  if (!text.trim()) return;
  if (sendCommand({ command: 'send', room: Number(pane.id), message: text })) {
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
    if (state.panes.get(pane.id) === pane && !pane.leaving) {
      sendCommand({ command: 'room_users', room: Number(pane.id) });
    }
  }, USERS_REFRESH_DELAY_MS);
}

// ---- Socket -----------------------------------------------------------------

function sendCommand(command) {
  const socket = state.socket;
  if (!socket || socket.readyState !== WebSocket.OPEN) return false;
  socket.send(JSON.stringify(command));
  state.lastCommand = command;
  return true;
}

function connect() {
  setStatus(state.backoffMs > BACKOFF_START_MS ? 'Reconnecting…' : 'Connecting…', 'connecting');
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const socket = new WebSocket(`${scheme}://${location.host}/chat/stream/`);
  state.socket = socket;

  socket.addEventListener('open', () => {
    state.backoffMs = BACKOFF_START_MS;
    setStatus('Connected', 'open');
    // Re-join whatever was open before the connection dropped.
    for (const pane of state.panes.values()) {
      if (pane.leaving) closePane(pane.id);
      else sendCommand({ command: 'join', room: Number(pane.id) });
    }
  });
  socket.addEventListener('message', (event) => {
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return;
    }
    if (frame && typeof frame === 'object') handleFrame(frame);
  });
  socket.addEventListener('close', () => {
    if (state.socket !== socket) return;
    state.socket = null;
    scheduleReconnect();
  });
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
  if ('error' in frame) return handleError(String(frame.error));
  if ('join' in frame) {
    const id = String(frame.join);
    const pane = openPane(id, String(frame.title ?? id));
    return sendCommand({ command: 'room_users', room: Number(pane.id) });
  }
  if ('leave' in frame) return closePane(String(frame.leave));

  const pane = state.panes.get(String(frame.room));
  if (!pane) return;
  if (frame.type === ROOM_USERS) return renderUsers(pane, frame.data && frame.data.users);

  const username = String(frame.username ?? '');
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

function handleError(code) {
  const text = ERROR_TEXT[code] || `Error: ${code}`;
  const command = state.lastCommand;
  const id = command && command.room !== undefined ? String(command.room) : null;
  if (command && command.command === 'join' && id && !state.panes.has(id)) {
    markRoom(id, 'none');
  }
  const pane = id && state.panes.get(id);
  if (!pane) {
    setStatus(text, 'error');
    return;
  }
  if (command.command === 'leave') {
    pane.leaving = false;
    pane.section.classList.remove('leaving');
  }
  // Give the text back so a rejected message can be edited or retried.
  if (command.command === 'send' && !pane.input.value) pane.input.value = command.message;
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
