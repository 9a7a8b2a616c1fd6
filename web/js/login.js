// The login page: says why the last attempt failed (the server redirects with ?failed=...).

import './theme.js';

const MESSAGES = {
  token: 'Wrong token',
  rate: 'Too many attempts, wait a moment',
  name: 'That name cannot be used (1 to 100 characters, no control characters)',
};

const input = document.getElementById('token');
const name = document.getElementById('name');
const error = document.getElementById('login-error');
const failed = new URLSearchParams(location.search).get('failed');
const message = Object.hasOwn(MESSAGES, failed) ? MESSAGES[failed] : '';

error.textContent = message;
error.hidden = !message;
input.setAttribute('aria-invalid', String(failed === 'token'));
name.setAttribute('aria-invalid', String(failed === 'name'));
// The name is remembered in this browser (the session carries it to the server).
name.value = localStorage.getItem('elog-author') || '';
name.addEventListener('change', () => localStorage.setItem('elog-author', name.value.trim()));
(failed === 'name' ? name : input).focus();
// Typing again means the message is about the previous attempt.
input.addEventListener('input', () => input.setAttribute('aria-invalid', 'false'), { once: true });
