// Whisper chat client: room list, one pane per open room, one WebSocket
// speaking protocol v2 (docs/protocol.md, sections 15 to 26). User text only
// ever reaches the DOM through textContent, attributes, or format.js's node
// building, never as HTML.
//
// Modules: chat-socket.js (requests and replies on the socket),
// message-list.js (a room's messages in seq order), outbox.js (own messages
// until the server has stored them), typing.js (typing notices), protocol.js
// (v2's figures, error words), format.js (message text to nodes),
// user-color.js (a stable colour per user), emoji-picker.js (the picker in
// each send form), shortcode-input.js with shortcodes.js (:smile: to 😄 as
// typed), dom.js (element building).

import { ChatSocket, DISCONNECTED, RequestError } from './chat-socket.js';
import { $, el } from './dom.js';
import { attachEmojiPicker } from './emoji-picker.js';
import { MessageList } from './message-list.js';
import { Outbox } from './outbox.js';
import { MUTE_CHOICES, PAGE_SIZE, TYPING_INTERVAL_MS, errorText, mutedText } from './protocol.js';
import { attachShortcodes } from './shortcode-input.js';
import { TypingIndicator, TypingNotifier } from './typing.js';
import { paintUser } from './user-color.js';

const BACKOFF_START_MS = 1000;
const BACKOFF_MAX_MS = 30000;
const USERS_REFRESH_DELAY_MS = 250;
// A request not answered by then means the connection is stuck: it is
// dropped and made again, and a message on its way shows "failed — retry".
const REPLY_TIMEOUT_MS = 10000;
// Scrolled to within this many pixels of the top, older messages load.
const LOAD_OLDER_PX = 80;
// Where the rooms open in this tab are kept, so a reload opens them again.
const OPEN_ROOMS_KEY = 'whisper.openRooms';
const RELOADED_TEXT = 'Some messages may be missing here — reloaded.';
const NEW_HISTORY_TEXT = 'This room’s history was cleared — reloaded.';
const NOT_V2_TEXT = 'The server does not speak this page’s protocol (v2). Retrying…';
const OFFLINE_SEND_TEXT = 'Not connected. Failed messages are sent again once the connection is back.';

const state = {
  me: null,              // {id, username, name, is_staff}
  rooms: new Map(),      // room id (string) -> {id, title, staff_only}
  panes: new Map(),      // room id (string) -> pane record, one per open room
  activeRoom: null,      // id of the pane last clicked or focused: see "Unread counts"
  socket: null,          // the ChatSocket, open or opening; null while waiting to reconnect
  backoffMs: BACKOFF_START_MS,
  joining: new Set(),    // room ids with a join under way
  rejoinErrors: [],      // rooms refused on the last reconnect, shown together
};

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
      if (state.socket?.isOpen) setStatus('Connected', 'open');
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

function isMe(user) {
  return Boolean(user && state.me && user.id === state.me.id);
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

// A click on a room joins it; a click on an open room brings its pane into
// view (people click a room because of its unread badge, and must not leave
// it by doing so). Leaving is the pane's Leave button.
function toggleRoom(id) {
  const pane = state.panes.get(id);
  if (pane) {
    activatePane(pane);
    pane.section.scrollIntoView({ block: 'nearest', inline: 'nearest' });
    pane.input.focus();
    return;
  }
  // A join already on its way: its result or error settles the button.
  if (state.joining.has(id)) return;
  if (state.socket?.isOpen) {
    markRoom(id, 'pending');
    joinRoom(id);
  } else {
    setStatus('Not connected. Try again in a moment.', 'error');
  }
}

// Which rooms this tab has open, for the next load of the page.
function saveOpenRooms() {
  try {
    sessionStorage.setItem(OPEN_ROOMS_KEY, JSON.stringify([...state.panes.keys()]));
  } catch {
    // Storage may be off (private modes): a reload then starts with no room open.
  }
}

function savedOpenRooms() {
  try {
    const ids = JSON.parse(sessionStorage.getItem(OPEN_ROOMS_KEY) ?? '[]');
    return Array.isArray(ids) ? ids.map(String) : [];
  } catch {
    return [];
  }
}

// ---- Unread counts ----------------------------------------------------------
//
// A new message from someone else counts as unread in its room unless the
// user is reading that room: the page is visible and has the focus, and the
// room's pane is the active one, the pane last clicked or focused (joining a
// room makes its pane active). On a wide screen every pane is on show, but
// the user reads and types in one; the others collect counts like background
// tabs. A count clears when its pane becomes active while the page is in view,
// or when the page comes back into view with that pane active. The sidebar
// button shows the count in a .unread badge, the tab title the total. The
// page of messages a join or a scroll back loads is not new: it never counts.

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
//
// A pane record holds, besides its elements, what recovery needs
// (docs/protocol.md §26.2): the room's epoch and lastSeq, the seq up to which
// the pane has every message since it joined. `joined` says whether the
// current socket is in the room; a pane stays open across reconnects and is
// joined again with `since`.

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
  const typing = el('p', { class: 'typing', 'aria-live': 'polite' });
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
    online, error, messages, typing, form);

  const list = new MessageList(messages, isMe, {
    canDelete: (user) => isMe(user) || Boolean(state.me?.is_staff),
    onDelete: (seq) => deleteMessage(pane, seq),
  });
  pane = {
    id, section, title: titleNode, online, onlineCount, error, input, list,
    typing: new TypingIndicator(typing),
    typingNotifier: new TypingNotifier(() => notifyTyping(pane), TYPING_INTERVAL_MS),
    outbox: new Outbox(list, state.me,
      (text, nonce) => request('send', { room: Number(id), text, nonce }),
      (failure) => onSendFailed(pane, failure)),
    epoch: null, lastSeq: 0, joined: false, resyncing: false, hasMore: false, loadingOlder: false,
    unread: 0, errorTimer: 0, usersTimer: 0, leaving: false,
  };
  leaveButton.addEventListener('click', () => leaveRoom(id));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    sendMessage(pane);
  });
  input.addEventListener('input', () => {
    if (input.value.trim() && pane.joined) pane.typingNotifier.typed();
  });
  messages.addEventListener('scroll', () => {
    if (list.nearTop(LOAD_OLDER_PX)) loadOlder(pane);
  });
  section.addEventListener('focusin', () => activatePane(pane));
  section.addEventListener('pointerdown', () => activatePane(pane));
  state.panes.set(id, pane);
  $('#rooms-panes').append(section);
  markRoom(id, 'joined');
  saveOpenRooms();
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
    pane.typing.clearAll();
    pane.section.remove();
    state.panes.delete(id);
    if (state.activeRoom === id) state.activeRoom = null;
    renderUnread(id);
    saveOpenRooms();
    if (hadFocus || document.activeElement === document.body) roomButton(id)?.focus();
  }
  markRoom(id, 'none');
}

function showPaneError(pane, text) {
  clearTimeout(pane.errorTimer);
  pane.error.textContent = text;
  pane.errorTimer = setTimeout(() => { pane.error.textContent = ''; }, 6000);
}

function renderUsers(pane, users) {
  const online = (Array.isArray(users) ? users : [])
    .filter((user) => user && user.online)
    .sort((a, b) => String(a.username).localeCompare(String(b.username)));
  pane.online.replaceChildren(...online.map((user) => {
    const item = paintUser(el('li', {
      class: isMe(user) ? 'online-user me' : 'online-user',
      text: user.username,
      title: user.name || user.username,
    }), String(user.username));
    if (state.me?.is_staff && !isMe(user)) item.append(muteSelect(pane, user));
    return item;
  }));
  pane.onlineCount.textContent = `${online.length} online`;
}

// ---- Mutes (staff) ------------------------------------------------------------

// A select to mute `user` in the pane's room for a while, or lift a mute.
function muteSelect(pane, user) {
  const select = el('select', {
    class: 'mute-select', 'aria-label': `Mute ${user.username}`, dataset: { userId: String(user.id) },
  },
  el('option', { value: '', text: 'Mute…' }),
  ...MUTE_CHOICES.map((choice) => el('option', { value: String(choice.seconds), text: `for ${choice.label}` })),
  el('option', { value: 'unmute', text: 'Unmute' }));
  select.addEventListener('change', () => {
    const choice = select.value;
    select.value = '';
    if (choice) muteUser(pane, user, choice === 'unmute' ? null : Number(choice));
  });
  return select;
}

// Mutes `user` for `seconds`, or lifts the mute (null); says what came of it.
async function muteUser(pane, user, seconds) {
  const room = Number(pane.id);
  const name = String(user.username);
  try {
    if (seconds === null) {
      await request('unmute', { room, user: user.id });
      pane.list.addNotice('mute', `${name} may post again.`, Date.now());
    } else {
      const result = await request('mute', { room, user: user.id, seconds });
      const end = new Date(result.until).toLocaleString();
      pane.list.addNotice('mute', `${name} is muted here until ${end}.`, Date.now());
    }
  } catch (error) {
    showPaneError(pane, error.connectionLost ? 'Not connected. Try again in a moment.' : errorText(error.code));
  }
}

// Why this user's own message did not go out.
function onSendFailed(pane, failure) {
  if (failure.code === 'MUTED') {
    pane.list.addNotice('mute', mutedText(failure.until), Date.now());
    return;
  }
  showPaneError(pane, failure.connectionLost ? OFFLINE_SEND_TEXT : errorText(failure.code));
}

// Bursts of entries and departures cause one room_users request, not one each.
function refreshUsersSoon(pane) {
  clearTimeout(pane.usersTimer);
  pane.usersTimer = setTimeout(() => {
    if (state.panes.get(pane.id) !== pane || pane.leaving) return;
    request('room_users', { room: Number(pane.id) }).then(
      (result) => {
        if (state.panes.get(pane.id) === pane) renderUsers(pane, result.users);
      },
      // Stale until the next entry, departure or join: no need to say so.
      () => {},
    );
  }, USERS_REFRESH_DELAY_MS);
}

// ---- Requests -----------------------------------------------------------------

// A request on the current socket; fails with DISCONNECTED between sockets.
function request(command, fields) {
  if (!state.socket) return Promise.reject(new RequestError(DISCONNECTED, fields.room));
  return state.socket.request(command, fields);
}

// Joins room `id`. A pane already open joins again with `since`, to get
// exactly what it missed (after a reconnect, or when its seqs jumped).
async function joinRoom(id) {
  const pane = state.panes.get(id);
  const fields = { room: Number(id), limit: PAGE_SIZE };
  if (pane?.epoch) fields.since = { seq: pane.lastSeq, epoch: pane.epoch };
  state.joining.add(id);
  let result;
  try {
    result = await request('join', fields);
  } catch (error) {
    state.joining.delete(id);
    onJoinRefused(id, Boolean(pane), error);
    return;
  }
  state.joining.delete(id);
  onJoined(result, fields.since);
}

function onJoined(result, since) {
  const id = String(result.room);
  const pane = openPane(id, String(result.title ?? id));
  const messages = Array.isArray(result.messages) ? result.messages : [];
  if (since && result.recovered) {
    // Exactly what was missed: nothing lost, nothing repeated.
    for (const message of messages) showNewMessage(pane, message);
  } else {
    // A first join, or recovery was not possible (§26.2): start again from
    // the latest page, and say so where the view was cut.
    const marker = since ? (result.epoch === since.epoch ? RELOADED_TEXT : NEW_HISTORY_TEXT) : null;
    pane.list.replace(messages, marker);
    // A short page is all the room keeps; a full one may have older messages.
    pane.hasMore = messages.length >= PAGE_SIZE && messages[0].seq > 1;
  }
  pane.epoch = String(result.epoch);
  pane.lastSeq = Number(result.seq);
  pane.joined = true;
  pane.resyncing = false;
  pane.outbox.resendAfterRejoin();
  refreshUsersSoon(pane);
  loadOlderIfUnscrollable(pane);
}

// What to say when a join is refused; names the room, which has no pane to show it in.
function joinErrorText(code, id, rejoin) {
  const title = `“${roomTitle(id)}”`;
  if (code === 'ROOM_ACCESS_DENIED') return `${title} is for staff only.`;
  if (code === 'ROOM_INVALID') return rejoin ? `${title} no longer exists.` : 'That room no longer exists.';
  const text = errorText(code);
  return rejoin ? `Could not rejoin ${title}. ${text}` : `Could not join ${title}. ${text}`;
}

function onJoinRefused(id, rejoin, error) {
  if (error.connectionLost) {
    // An open pane is joined again on the next connection.
    if (!state.panes.has(id)) markRoom(id, 'none');
    return;
  }
  const message = joinErrorText(error.code, id, rejoin);
  if (rejoin) {
    // The server does not have us in this room: a pane left open would be a lie.
    closePane(id);
    state.rejoinErrors.push(message);
    setStatus(state.rejoinErrors.join(' '), 'error');
  } else {
    markRoom(id, 'none');
    setStatus(message, 'error');
  }
}

// The view cannot be trusted to follow on (a seq jumped, the epoch changed):
// join again on the same socket with `since`, which the server allows (§19.1).
function resync(pane) {
  if (pane.resyncing) return;
  pane.resyncing = true;
  joinRoom(pane.id);
}

async function leaveRoom(id) {
  const pane = state.panes.get(id);
  if (!pane || pane.leaving) return;
  if (!state.socket?.isOpen) {
    // Offline: the server took us out of every room when the socket closed.
    closePane(id);
    return;
  }
  pane.leaving = true;
  pane.section.classList.add('leaving');
  try {
    await request('leave', { room: Number(id) });
  } catch (error) {
    // UNAVAILABLE leaves us in the room; any other answer means we are out.
    if (error.code === 'UNAVAILABLE') {
      pane.leaving = false;
      pane.section.classList.remove('leaving');
      showPaneError(pane, errorText(error.code));
      return;
    }
  }
  closePane(id);
}

// The server took this socket out of a room: the user lost staff, or the
// room was made staff-only (ROOM_ACCESS_DENIED), or it was deleted
// (ROOM_INVALID: it leaves the room list too).
function onRemovedFromRoom(room, code) {
  const id = String(room);
  const title = roomTitle(id);
  if (state.panes.has(id)) closePane(id);
  if (code === 'ROOM_INVALID') {
    state.rooms.delete(id);
    renderRoomList();
    setStatus(`“${title}” was deleted.`, 'error');
  } else {
    setStatus(`You are no longer in “${title}”: it is for staff only.`, 'error');
  }
}

// ---- Messages -------------------------------------------------------------

function sendMessage(pane) {
  const text = pane.input.value;
  if (!text.trim() || pane.leaving) return;
  pane.outbox.submit(text);
  pane.input.value = '';
}

function notifyTyping(pane) {
  // Best effort (§19.6): a lost notice only means no indicator for a moment.
  request('typing', { room: Number(pane.id) }).catch(() => {});
}

// A message the user has not seen before: live, or recovered after a reconnect.
function showNewMessage(pane, message) {
  pane.typing.clear(message.user?.id);
  if (pane.list.add(message) && !isMe(message.user)) countUnread(pane);
}

function onEvent(frame) {
  const pane = state.panes.get(String(frame.room));
  if (!pane || !pane.joined) return;
  const user = frame.user || {};
  switch (frame.event) {
    case 'message':
      return onMessageEvent(pane, frame);
    case 'enter':
      pane.list.addNotice('enter', `${user.username} joined`, frame.ts);
      return refreshUsersSoon(pane);
    case 'leave':
      pane.typing.clear(user.id);
      pane.list.addNotice('leave', `${user.username} left`, frame.ts);
      return refreshUsersSoon(pane);
    case 'typing':
      if (!isMe(user)) pane.typing.show(user);
      return undefined;
    case 'deleted':
      pane.list.markDeleted(frame.seq);
      return undefined;
    case 'muted':
      pane.list.addNotice('mute', mutedText(frame.until), Date.now());
      return undefined;
    case 'unmuted':
      pane.list.addNotice('mute', 'You may post in this room again.', Date.now());
      return undefined;
    default:
      // Kinds this page does not know yet (§20): ignored.
      return undefined;
  }
}

// While the socket is in the room, each message event's seq is one more
// than the last (§26.2). One that skips ahead is not patched in: the room is
// joined again to fill the gap.
function onMessageEvent(pane, message) {
  if (typeof message.nonce === 'string') pane.outbox.acknowledge(message.nonce, message.seq, message.ts);
  if (message.seq > pane.lastSeq + 1) {
    resync(pane);
    return;
  }
  if (message.seq === pane.lastSeq + 1) pane.lastSeq = message.seq;
  showNewMessage(pane, message);
}

// Deletes message `seq` of the pane's room for everyone, once the user
// confirms (§19.7). The line changes when the server has erased it; the
// `deleted` event, which every member gets, says the same again.
async function deleteMessage(pane, seq) {
  if (!window.confirm('Delete this message for everyone?')) return;
  try {
    await request('delete', { room: Number(pane.id), seq });
  } catch (error) {
    if (error.connectionLost) showPaneError(pane, 'Not connected. Try again in a moment.');
    else if (error.code === 'ROOM_ACCESS_DENIED') showPaneError(pane, 'You may delete only your own messages.');
    else showPaneError(pane, errorText(error.code));
    return;
  }
  if (state.panes.get(pane.id) === pane) pane.list.markDeleted(seq);
}

// ---- Older messages ---------------------------------------------------------

// Loads the page of messages before the oldest one shown, if there is one.
async function loadOlder(pane) {
  const before = pane.list.oldestSeq;
  if (!pane.joined || pane.loadingOlder || !pane.hasMore || before === undefined) return;
  pane.loadingOlder = true;
  pane.list.showLoadingOlder(true);
  let result;
  try {
    result = await request('history', { room: Number(pane.id), before, limit: PAGE_SIZE });
  } catch (error) {
    if (!error.connectionLost) showPaneError(pane, errorText(error.code));
    return;
  } finally {
    pane.loadingOlder = false;
    pane.list.showLoadingOlder(false);
  }
  // The view was reloaded meanwhile: this page belongs before another one.
  if (state.panes.get(pane.id) !== pane || pane.list.oldestSeq !== before) return;
  if (result.epoch !== pane.epoch) {
    resync(pane);
    return;
  }
  pane.list.prependOlder(Array.isArray(result.messages) ? result.messages : []);
  pane.hasMore = Boolean(result.has_more);
  loadOlderIfUnscrollable(pane);
}

// Older messages load when the user scrolls up; a view too short to scroll
// is filled instead.
function loadOlderIfUnscrollable(pane) {
  if (!pane.list.overflows) loadOlder(pane);
}

// ---- Socket -----------------------------------------------------------------

function connect() {
  setStatus(state.backoffMs > BACKOFF_START_MS ? 'Reconnecting…' : 'Connecting…', 'connecting');
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const socket = new ChatSocket(`${scheme}://${location.host}/chat/stream/`, {
    onOpen: onConnected,
    onEvent,
    onRemoved: onRemovedFromRoom,
    onClose: (reason) => onDisconnected(socket, reason),
  }, REPLY_TIMEOUT_MS);
  state.socket = socket;
}

function onConnected() {
  state.backoffMs = BACKOFF_START_MS;
  setStatus('Connected', 'open');
  // Join again whatever was open before, with `since` where the pane has seen
  // messages: it gets exactly what it missed.
  state.rejoinErrors = [];
  for (const id of [...state.panes.keys()]) joinRoom(id);
}

function onDisconnected(socket, reason) {
  if (state.socket !== socket) return;
  state.socket = null;
  for (const pane of state.panes.values()) {
    pane.joined = false;
    pane.resyncing = false;
    pane.typing.clearAll();
  }
  scheduleReconnect(reason === 'protocol' ? NOT_V2_TEXT : 'Reconnecting…');
}

async function scheduleReconnect(statusText) {
  setStatus(statusText, 'closed');
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
  // The rooms open before a reload open again, and are joined once connected;
  // rooms deleted meanwhile are forgotten.
  for (const id of savedOpenRooms()) {
    const room = state.rooms.get(id);
    if (room) openPane(id, room.title);
  }
  saveOpenRooms();
  connect();
}

start();
