// Whisper admin page (staff only): rooms (create, delete, staff-only flag),
// users (create, staff flag, deactivate / reactivate, password reset, delete)
// and, for superusers, the moderation record, through the JSON admin API (see
// the README). Every change is re-rendered from the server's answer, never
// from what the page assumed. Only superusers create users (the server
// renders the form for them only) or change them, never their own account:
// the server says, per user, why the viewer may not (staff_locked,
// active_locked, password_locked, delete_locked), and the row shows that
// instead of a button.
//
// Unsafe requests carry the CSRF token from #csrf-token in X-CSRFToken.
// Deleting a room or a user takes two clicks on the same button ("Delete",
// then "Really delete?" within a few seconds), without a modal dialog.

import { $, el } from './dom.js';

const DELETE_CONFIRM_MS = 4000;
const STATUS_CLEAR_MS = 8000;

const csrfToken = $('#csrf-token').value;
let me = null; // {id, username, ...} from /api/me, to mark the own row as "(you)"

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// One request to the admin API; resolves to the JSON answer (null for 204).
async function api(method, url, body) {
  const headers = { Accept: 'application/json' };
  const init = { method, credentials: 'same-origin', headers };
  if (method !== 'GET') headers['X-CSRFToken'] = csrfToken;
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch {
    throw new ApiError(0, 'Could not reach the server. Check the connection and try again.');
  }
  if (response.status === 401) {
    location.assign('/accounts/login/?next=/admin/');
    throw new ApiError(401, 'Your session has ended. Please log in again.');
  }
  if (!response.ok) throw new ApiError(response.status, await failureText(response));
  // Every change made here is a new entry of the record: show it.
  if (method !== 'GET') loadRecord().catch(showFailure);
  return response.status === 204 ? null : response.json();
}

// The server's own words for 400, 403 and 409 (text/plain, e.g. "Bad request:
// room titles are 1 to 255 characters", or JSON {"error": "..."} for a refused
// change or a taken username), plain words for the rest.
async function failureText(response) {
  const body = (await response.text().catch(() => '')).trim();
  let text = body;
  if (response.headers.get('Content-Type')?.startsWith('application/json')) {
    try {
      text = String(JSON.parse(body).error ?? body);
    } catch {
      text = body;
    }
  }
  if (response.status === 404) return 'That no longer exists; the list has been reloaded.';
  if (response.status === 403) return text || 'Forbidden: staff only.';
  if ((response.status === 400 || response.status === 409) && text) return text;
  return `The server answered ${response.status}${text ? `: ${text}` : ''}.`;
}

let statusTimer = 0;

function setStatus(text, kind = 'info') {
  const status = $('#status');
  status.textContent = text;
  status.dataset.state = kind === 'error' ? 'error' : 'open';
  clearTimeout(statusTimer);
  statusTimer = setTimeout(() => { status.textContent = ''; }, STATUS_CLEAR_MS);
}

function showFailure(error) {
  setStatus(error.message, 'error');
  if (error.status === 404) reloadAll();
}

// Run `action` with `button` disabled, so a double click is one request.
async function busy(button, action) {
  button.disabled = true;
  try {
    await action();
  } catch (error) {
    showFailure(error);
  } finally {
    if (button.isConnected) button.disabled = false;
  }
}

// A "Delete" button that asks "Really delete?" first and runs `action` on the
// second click within a few seconds.
function deleteButton(className, action) {
  const remove = el('button', { type: 'button', class: `${className} danger`, text: 'Delete' });
  let confirmTimer = 0;
  remove.addEventListener('click', () => {
    if (!remove.classList.contains('confirming')) {
      remove.classList.add('confirming');
      remove.textContent = 'Really delete?';
      confirmTimer = setTimeout(() => {
        remove.classList.remove('confirming');
        remove.textContent = 'Delete';
      }, DELETE_CONFIRM_MS);
      return;
    }
    clearTimeout(confirmTimer);
    busy(remove, action);
  });
  return remove;
}

// ---- Rooms ------------------------------------------------------------------

async function loadRooms() {
  renderRooms(await api('GET', '/api/rooms'));
}

function renderRooms(rooms) {
  const body = $('#admin-rooms tbody');
  body.replaceChildren(...rooms.map(roomRow));
  if (rooms.length === 0) {
    body.append(el('tr', { class: 'empty-row' },
      el('td', { colspan: '3', text: 'No rooms yet. Create one above.' })));
  }
}

function roomRow(room) {
  const row = el('tr', { dataset: { roomId: String(room.id) } });
  fillRoomRow(row, room);
  return row;
}

// (Re)fills a room's row from the server's view of the room.
function fillRoomRow(row, room) {
  const toggle = el('button', {
    type: 'button', class: 'toggle-staff-only', 'aria-pressed': String(room.staff_only),
    text: room.staff_only ? 'Open to everyone' : 'Make staff-only',
  });
  toggle.addEventListener('click', () => busy(toggle, async () => {
    const updated = await api('PATCH', `/api/admin/rooms/${room.id}`, { staff_only: !room.staff_only });
    fillRoomRow(row, updated);
    setStatus(`“${updated.title}” is now ${updated.staff_only ? 'for staff only' : 'open to everyone'}.`);
    row.querySelector('.toggle-staff-only').focus();
  }));

  const remove = deleteButton('delete-room', async () => {
    await api('DELETE', `/api/admin/rooms/${room.id}`);
    await loadRooms();
    setStatus(`Deleted “${room.title}”.`);
    $('#new-room-title').focus();
  });

  row.replaceChildren(
    el('td', { class: 'room-title', text: room.title }),
    el('td', { class: 'room-access' }, room.staff_only
      ? el('span', { class: 'badge', text: 'staff only' })
      : el('span', { class: 'muted', text: 'everyone' })),
    el('td', { class: 'actions' }, toggle, remove),
  );
}

function setUpNewRoomForm() {
  const form = $('#new-room-form');
  const title = $('#new-room-title');
  const staffOnly = $('#new-room-staff-only');
  const submit = form.querySelector('button[type="submit"]');
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    busy(submit, async () => {
      const room = await api('POST', '/api/admin/rooms', {
        title: title.value, staff_only: staffOnly.checked,
      });
      form.reset();
      await loadRooms();
      setStatus(`Created “${room.title}”${room.staff_only ? ' (staff only)' : ''}.`);
      title.focus();
    });
  });
}

// ---- Users ------------------------------------------------------------------

async function loadUsers() {
  const users = await api('GET', '/api/admin/users');
  $('#admin-users tbody').replaceChildren(...users.map(userRow));
}

function userRow(user) {
  const row = el('tr', { dataset: { userId: String(user.id) } });
  fillUserRow(row, user);
  return row;
}

function fillUserRow(row, user) {
  const self = me && me.id === user.id;
  row.replaceChildren(
    userCell(user, self),
    el('td', { class: 'user-name', text: user.name || '' }),
    el('td', {}, userRoles(user)),
    el('td', { class: 'actions' },
      staffControl(row, user), activeControl(row, user), passwordControl(row, user),
      deleteUserControl(user)),
  );
}

// The two-click delete button, or nothing when the viewer may not use it.
// The user's messages stay, shown as from a deleted user.
function deleteUserControl(user) {
  if (user.delete_locked) return '';
  return deleteButton('delete-user', async () => {
    await api('DELETE', `/api/admin/users/${user.id}`);
    await loadUsers();
    setStatus(`Deleted ${user.username}: logged out everywhere; their messages stay.`);
  });
}

// The "Reset password" button, or nothing when the viewer may not use it. The
// button opens a small form in the row; setting the password logs the user
// out everywhere, so the status line says so.
function passwordControl(row, user) {
  if (user.password_locked) return '';
  const open = el('button', { type: 'button', class: 'reset-password', text: 'Reset password' });
  open.addEventListener('click', () => {
    const password = el('input', {
      type: 'password', class: 'new-password', required: '', minlength: '8', maxlength: '1024',
      autocomplete: 'new-password', 'aria-label': `New password for ${user.username}`,
      placeholder: 'New password',
    });
    const save = el('button', { type: 'submit', class: 'primary', text: 'Set password' });
    const cancel = el('button', { type: 'button', text: 'Cancel' });
    const form = el('form', { class: 'password-reset' }, password, save, cancel);
    cancel.addEventListener('click', () => {
      fillUserRow(row, user);
      row.querySelector('.reset-password')?.focus();
    });
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      busy(save, async () => {
        const updated = await api('POST', `/api/admin/users/${user.id}/password`, { password: password.value });
        fillUserRow(row, updated);
        row.querySelector('.reset-password')?.focus();
        setStatus(`${updated.username} has a new password and is logged out everywhere.`);
      });
    });
    open.replaceWith(form);
    password.focus();
  });
  return open;
}

// The deactivate / reactivate button, or nothing when the viewer may not use
// it (its reason is the staff column's, or the viewer's own row).
function activeControl(row, user) {
  if (user.active_locked) return '';
  const toggle = el('button', {
    type: 'button', class: `toggle-active${user.is_active ? ' danger' : ''}`,
    text: user.is_active ? 'Deactivate' : 'Reactivate',
  });
  toggle.addEventListener('click', () => busy(toggle, async () => {
    const updated = await api('POST', `/api/admin/users/${user.id}/active`, { is_active: !user.is_active });
    fillUserRow(row, updated);
    row.querySelector('.toggle-active')?.focus();
    setStatus(updated.is_active
      ? `${updated.username} may log in again.`
      : `${updated.username} is deactivated: logged out everywhere and cannot log in.`);
  }));
  return toggle;
}

// The staff toggle, or why the viewer may not change this user's staff flag.
function staffControl(row, user) {
  if (user.staff_locked) {
    return el('span', { class: 'muted staff-locked', text: user.staff_locked });
  }
  const toggle = el('button', {
    type: 'button', class: 'toggle-staff', 'aria-pressed': String(user.is_staff),
    text: user.is_staff ? 'Remove staff' : 'Make staff',
  });
  toggle.addEventListener('click', () => busy(toggle, async () => {
    const updated = await api('PATCH', `/api/admin/users/${user.id}`, { is_staff: !user.is_staff });
    fillUserRow(row, updated);
    row.querySelector('.toggle-staff')?.focus();
    setStatus(`${updated.username} is ${updated.is_staff ? 'now staff' : 'no longer staff'}.`);
  }));
  return toggle;
}

function userCell(user, self) {
  const cell = el('td', { class: 'user-cell' }, el('span', { class: 'username', text: user.username }));
  if (self) cell.append(el('span', { class: 'muted you', text: '(you)' }));
  return cell;
}

function userRoles(user) {
  const roles = el('div', { class: 'user-roles' });
  if (user.is_superuser) roles.append(el('span', { class: 'badge', text: 'superuser' }));
  if (user.is_staff) roles.append(el('span', { class: 'badge', text: 'staff' }));
  if (!user.is_active) roles.append(el('span', { class: 'badge badge-muted', text: 'inactive' }));
  return roles;
}

// Only superusers get the form (the server renders it for them alone).
function setUpNewUserForm() {
  const form = $('#new-user-form');
  if (!form) return;
  const submit = form.querySelector('button[type="submit"]');
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    busy(submit, async () => {
      const user = await api('POST', '/api/admin/users', {
        username: $('#new-user-username').value,
        name: $('#new-user-name').value,
        password: $('#new-user-password').value,
        is_staff: $('#new-user-staff').checked,
      });
      form.reset();
      await loadUsers();
      setStatus(`Created ${user.username}${user.is_staff ? ' (staff)' : ''}.`);
      $('#new-user-username').focus();
    });
  });
}

// ---- Moderation record (superusers) -----------------------------------------

// Only superusers get the record's table (the server renders it for them
// alone, and refuses the API to anyone else).
async function loadRecord() {
  const body = $('#admin-record tbody');
  if (!body) return;
  const entries = await api('GET', '/api/admin/record');
  body.replaceChildren(...entries.map((entry) => el('tr', {},
    el('td', { class: 'record-at', text: new Date(entry.at).toLocaleString() }),
    el('td', { class: 'record-actor', text: entry.actor }),
    el('td', { class: 'record-action', text: entry.action }),
    el('td', { class: 'record-subject', text: entry.subject }),
    el('td', { class: 'record-detail', text: entry.detail }))));
  if (entries.length === 0) {
    body.append(el('tr', { class: 'empty-row' },
      el('td', { colspan: '5', text: 'Nothing recorded yet.' })));
  }
}

// ---- Start ------------------------------------------------------------------

async function reloadAll() {
  try {
    await Promise.all([loadRooms(), loadUsers(), loadRecord()]);
  } catch (error) {
    setStatus(error.message, 'error');
  }
}

async function start() {
  setUpNewRoomForm();
  setUpNewUserForm();
  try {
    me = await api('GET', '/api/me');
  } catch {
    me = null; // only used to mark the own row
  }
  await reloadAll();
}

start();
