// The login page: says why the last attempt failed (the server redirects with ?failed=...).

import './theme.js';

const MESSAGES = {
  token: 'Wrong token',
  rate: 'Too many attempts, wait a moment',
};

const input = document.getElementById('token');
const error = document.getElementById('login-error');
const failed = new URLSearchParams(location.search).get('failed');
const message = Object.hasOwn(MESSAGES, failed) ? MESSAGES[failed] : '';

error.textContent = message;
error.hidden = !message;
input.setAttribute('aria-invalid', String(failed === 'token'));
input.focus();
// Typing again means the message is about the previous attempt.
input.addEventListener('input', () => input.setAttribute('aria-invalid', 'false'), { once: true });
