// Whisper chat client: room list, one pane per joined room, one WebSocket
// speaking protocol v1 (see docs/protocol.md). User text only ever reaches the DOM
// through textContent, attributes, or format.js's node building, never as HTML.
//
// Modules: protocol.js (message kinds, error words), format.js (message text
// to nodes), user-color.js (a stable colour per user), emoji-picker.js (the
// picker in each send form), shortcode-input.js with shortcodes.js (:smile:
// to 😄 as typed), dom.js (element building).

import { $, el } from './dom.js';
import { attachEmojiPicker } from './emoji-picker.js';
import { formatMessage } from './format.js';
import { MSG, ROOM_USERS, errorText } from './protocol.js';
import { attachShortcodes } from './shortcode-input.js';
import { paintUser } from './user-color.js';

const BACKOFF_START_MS = 1000;
const BACKOFF_MAX_MS = 30000;
const USERS_REFRESH_DELAY_MS = 250;
// A command whose outcome has not arrived by then means the connection is stuck.
const REPLY_TIMEOUT_MS = 15000;
const RECONNECTED_TEXT = 'Reconnected — messages sent while you were offline are not shown.';

const state = {
  me: null,              // {id, username, name, is_staff}
  rooms: new Map(),      // room id (string) -> {id, title, staff_only}
  panes: new Map(),      // room id (string) -> pane record, one per joined room
  activeRoom: null,      // id of the pane last clicked or focused: see "Unread counts"
  socket: null,
  backoffMs: BACKOFF_START_MS,
  // Outgoing commands, one at a time: see "Command queue" below.
  queue: [],             // commands waiting their turn: {command, room, message?, rejoin?}
  inFlight: null,        // the one command sent and awaiting its outcome, or null
  inFlightTimer: 0,
  rejoinErrors: [],      // rooms refused on the last reconnect, shown together
};

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
  const focusedId = list.contains(document.activeElement) ? document.activeElement.dataset.roomId : null;
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
    markRoom(room.id, 'none');
  }
  if (state.rooms.size === 0) list.append(noRoomsHint());
  for (const id of state.panes.keys()) {
    markRoom(id, 'joined');
    renderUnread(id);
  }
  if (focusedId) roomButton(focusedId)?.focus();
}

// A fresh install has General, but staff may delete every room: then say
// who can make one, and to staff, where.
function noRoomsHint() {
  const hint = el('li', { class: 'hint no-rooms' }, 'No rooms yet. ');
  if (state.me?.is_staff) {
    hint.append(el('a', { href: '/admin/', text: 'Create one on the admin page.' }));
  } else {
    hint.append('Only staff can create rooms; ask an administrator.');
  }
  return hint;
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
  button.title = mark === 'joined' ? 'Leave this room' : 'Join this room';
}

function roomTitle(id) {
  const room = state.rooms.get(id);
  if (room) return room.title;
  const pane = state.panes.get(id);
  return pane ? pane.title.textContent : `Room ${id}`;
}

// A click on a room joins it; a click on a joined room brings its pane into
// view (people click a room because of its unread badge, and must not leave
// it by doing so). Leaving is the pane's Leave button.
function toggleRoom(id) {
  // A join already on its way: its reply or error settles the button.
  if (joinPending(id)) return;
  const pane = state.panes.get(id);
  if (pane) {
    activatePane(pane);
    pane.section.scrollIntoView({ block: 'nearest', inline: 'nearest' });
    pane.input.focus();
  } else if (enqueue({ command: 'join', room: id })) {
    markRoom(id, 'pending');
  } else {
    setStatus('Not connected. Try again in a moment.', 'error');
  }
}

// ---- Unread counts ----------------------------------------------------------
//
// A message from someone else (msg_type 0) counts as unread in its room unless
// the user is reading that room: the page is visible and has the focus, and
// the room's pane is the active one, the pane last clicked or focused (joining
// a room makes its pane active). On a wide screen every pane is on show, but
// the user reads and types in one; the others collect counts like background
// tabs. A count clears when its pane becomes active while the page is in view,
// or when the page comes back into view with that pane active. The sidebar
// button shows the count in a .unread badge, the tab title the total.

function isReading(pane) {
  return state.activeRoom === pane.id && !document.hidden && document.hasFocus();
}

function activatePane(pane) {
  if (state.activeRoom !== pane.id) {
    state.panes.get(state.activeRoom)?.section.classList.remove('active');
    state.activeRoom = pane.id;
    pane.section.classList.add('active');
  }
  if (isReading(pane)) clearUnread(pane);
}

function countUnread(pane) {
  if (isReading(pane)) return;
  pane.unread += 1;
  renderUnread(pane.id);
}

function clearUnread(pane) {
  if (pane.unread === 0) return;
  pane.unread = 0;
  renderUnread(pane.id);
}

function renderUnread(id) {
  const count = state.panes.get(id)?.unread ?? 0;
  const button = roomButton(id);
  if (button) {
    let badge = button.querySelector('.unread');
    if (count === 0) {
      badge?.remove();
    } else {
      if (!badge) badge = button.appendChild(el('span', { class: 'unread' }));
      badge.textContent = count > 99 ? '99+' : String(count);
      badge.title = `${count} unread ${count === 1 ? 'message' : 'messages'}`;
    }
  }
  let total = 0;
  for (const pane of state.panes.values()) total += pane.unread;
  document.title = total ? `(${total}) Whisper` : 'Whisper';
}

function onPageInView() {
  const pane = state.panes.get(state.activeRoom);
  if (pane && isReading(pane)) clearUnread(pane);
}

// ---- Panes ----------------------------------------------------------------

function openPane(id, title) {
  let pane = state.panes.get(id);
  if (pane) {
    pane.title.textContent = title;
    return pane;
  }
  const titleNode = el('h2', { class: 'pane-title', text: title });
  const heading = el('div', { class: 'pane-heading' }, titleNode);
  if (state.rooms.get(id)?.staff_only) {
    heading.append(el('span', { class: 'badge', text: 'staff', title: 'Staff-only room' }));
  }
  const onlineCount = el('span', { class: 'online-count' });
  heading.append(onlineCount);
  const online = el('ul', { class: 'online-list', 'aria-label': `Online in ${title}` });
  const leaveButton = el('button', {
    type: 'button', class: 'leave-button', text: 'Leave', 'aria-label': `Leave ${title}`,
  });
  const error = el('p', { class: 'pane-error error', role: 'alert' });
  const messages = el('ol', {
    class: 'messages', 'aria-live': 'polite', 'aria-label': `Messages in ${title}`,
  });
  const input = el('input', {
    type: 'text', class: 'send-input', name: 'message', autocomplete: 'off',
    enterkeyhint: 'send', placeholder: `Message ${title}`, 'aria-label': `Message ${title}`,
  });
  const form = el('form', { class: 'send-form' },
    input, el('button', { type: 'submit', class: 'primary send-button', text: 'Send' }));
  attachEmojiPicker(form, input);
  attachShortcodes(input);
  const section = el('section', { class: 'room-pane', dataset: { roomPane: id }, 'aria-label': title },
    el('header', { class: 'pane-header' }, heading, leaveButton),
    online, error, messages, form);

  pane = { id, section, title: titleNode, online, onlineCount, error, messages, input,
    unread: 0, errorTimer: 0, usersTimer: 0, leaving: false };
  leaveButton.addEventListener('click', () => leaveRoom(id));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    sendMessage(pane);
  });
  section.addEventListener('focusin', () => activatePane(pane));
  section.addEventListener('pointerdown', () => activatePane(pane));
  state.panes.set(id, pane);
  $('#rooms-panes').append(section);
  markRoom(id, 'joined');
  input.focus();
  activatePane(pane);
  return pane;
}

function closePane(id) {
  const pane = state.panes.get(id);
  if (pane) {
    // Focus inside a pane that goes away would fall back to <body>: keep it
    // on the room's sidebar button instead, so the keyboard user stays put.
    const hadFocus = pane.section.contains(document.activeElement);
    clearTimeout(pane.errorTimer);
    clearTimeout(pane.usersTimer);
    pane.section.remove();
    state.panes.delete(id);
    if (state.activeRoom === id) state.activeRoom = null;
    renderUnread(id);
    if (hadFocus || document.activeElement === document.body) roomButton(id)?.focus();
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

function timeNode(date) {
  return el('time', { class: 'msg-time', datetime: date.toISOString(), text: hhmm(date) });
}

// v1 frames carry no time: a message is stamped when it arrives.
function addMessage(pane, username, message) {
  const own = state.me && username === state.me.username;
  const line = el('li', { class: own ? 'message own' : 'message' },
    el('span', { class: 'msg-user', text: username }),
    timeNode(new Date()),
    el('p', { class: 'msg-text' }, formatMessage(message)));
  appendLine(pane, paintUser(line, username));
  if (!own) countUnread(pane);
}

function addNotice(pane, kind, text) {
  appendLine(pane, el('li', { class: `notice notice-${kind}` },
    el('span', { class: 'notice-text', text }),
    timeNode(new Date())));
}

function renderUsers(pane, users) {
  const online = Object.values(users || {})
    .filter((user) => user && !user.left)
    .sort((a, b) => String(a.username).localeCompare(String(b.username)));
  pane.online.replaceChildren(...online.map((user) => paintUser(el('li', {
    class: state.me && user.username === state.me.username ? 'online-user me' : 'online-user',
    text: user.username,
    title: user.name || user.username,
  }), String(user.username))));
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
  // A dead session makes every upgrade fail; send the user to log in instead of
  // looping. The room list may have changed meanwhile (rooms made or deleted).
  try {
    await fetchJson('/api/me');
    await loadRooms();
    renderRoomList();
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
  const text = errorText(code);
  return rejoin ? `Could not rejoin ${title}. ${text}` : `Could not join ${title}. ${text}`;
}

// `entry` is the command the error answers (null if none was in flight).
function handleError(code, entry) {
  const text = errorText(code);
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

async function loadRooms() {
  const rooms = await fetchJson('/api/rooms');
  state.rooms = new Map(rooms.map((room) => [String(room.id), { ...room, id: String(room.id) }]));
}

async function start() {
  window.addEventListener('focus', onPageInView);
  document.addEventListener('visibilitychange', onPageInView);
  try {
    const [me] = await Promise.all([fetchJson('/api/me'), loadRooms()]);
    state.me = me;
    $('#whoami').textContent = me.username;
    // Staff get a way to the admin page; the page itself checks again.
    $('#admin-link').hidden = !me.is_staff;
  } catch (error) {
    if (error.message !== 'not logged in') setStatus('Could not load rooms. Reload to try again.', 'error');
    return;
  }
  renderRoomList();
  connect();
}

start();
