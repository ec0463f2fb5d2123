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

// form[data-confirm]: ask before a destructive action. A form confirmed here says so in its
// hidden `confirmed` field (set to "yes"); the server sends any other post of it to its own
// confirmation page, so the action is confirmed even when this script does not run or load.
document.addEventListener('submit', (event) => {
  const form = event.target.closest('form[data-confirm]');
  if (!form) return;
  if (!window.confirm(form.dataset.confirm)) {
    event.preventDefault();
    return;
  }
  const confirmed = form.querySelector('input[name="confirmed"]');
  if (confirmed) confirmed.value = 'yes';
});
