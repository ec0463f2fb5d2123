// HA Configuration: show only the fields that apply to the chosen
// Mode and Replication as they change (the server marks each field with the `Mode/replication`
// pairs it applies to). Without this script the "Show fields for this mode" button does it.
'use strict';

(() => {
  const form = document.getElementById('ha-config');
  if (!form) return;
  const mode = form.querySelector('[name=mode]');
  const replication = form.querySelector('[name=replication]');
  if (!mode || !replication) return;

  function show() {
    const chosen = `${mode.value}/${replication.value}`;
    for (const field of form.querySelectorAll('[data-applies]')) {
      // A field with a problem stays in sight whatever the Mode.
      const applies = field.dataset.applies.split(' ').includes(chosen);
      field.hidden = !applies && !field.classList.contains('invalid');
    }
    for (const group of form.querySelectorAll('fieldset[data-group]')) {
      group.hidden = !group.querySelector('[data-applies]:not([hidden])');
    }
  }

  for (const element of form.querySelectorAll('[data-show-fields]')) element.hidden = true;
  mode.addEventListener('change', show);
  replication.addEventListener('change', show);
  show();
})();
