// Tandem consoles: progressive enhancement only. Every page works without this script.
'use strict';

// [data-refresh]: reload the page's main part in place (the link itself reloads the whole page
// when this script does not run).
document.addEventListener('click', async (event) => {
  const link = event.target.closest('[data-refresh]');
  if (!link) return;
  event.preventDefault();
  link.setAttribute('aria-busy', 'true');
  try {
    const answer = await fetch(link.getAttribute('href') || location.href, { credentials: 'same-origin' });
    if (answer.redirected && new URL(answer.url).pathname === '/login') { location.href = answer.url; return; }
    const html = new DOMParser().parseFromString(await answer.text(), 'text/html');
    const fresh = html.querySelector('main');
    if (fresh) document.querySelector('main').replaceWith(fresh);
  } catch (error) {
    location.reload();
  } finally {
    link.removeAttribute('aria-busy');
  }
});

// [data-copy="ID"]: copy the text of element ID to the clipboard.
document.addEventListener('click', async (event) => {
  const button = event.target.closest('[data-copy]');
  if (!button) return;
  const source = document.getElementById(button.dataset.copy);
  if (!source) return;
  try {
    await navigator.clipboard.writeText(source.value || source.textContent);
    button.textContent = 'Copied';
  } catch (error) {
    source.select && source.select();
  }
});

// form[data-confirm]: ask before a destructive action (the server asks again on its own
// confirmation page when this script does not run). With data-confirm-field="NAME", a confirmed
// form also sends NAME=yes, so the server skips its confirmation page: it was answered here.
document.addEventListener('submit', (event) => {
  const form = event.target.closest('form[data-confirm]');
  if (!form) return;
  if (!window.confirm(form.dataset.confirm)) {
    event.preventDefault();
    return;
  }
  const field = form.dataset.confirmField;
  if (field && !form.querySelector(`input[name="${field}"]`)) {
    const confirmed = document.createElement('input');
    confirmed.type = 'hidden';
    confirmed.name = field;
    confirmed.value = 'yes';
    form.append(confirmed);
  }
});
