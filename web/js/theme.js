// The colour theme: the system's preference ("auto"), or dark or light as chosen here and
// remembered in this browser. Control-room kiosks often report no preference, which browsers
// treat as light; one click makes them dark for good.

const KEY = 'elog-theme';
const CHOICES = ['auto', 'dark', 'light'];
const systemLight = matchMedia('(prefers-color-scheme: light)');

export function storedChoice() {
  const value = localStorage.getItem(KEY);
  return CHOICES.includes(value) ? value : 'auto';
}

export function applyTheme(choice = storedChoice()) {
  const light = choice === 'light' || (choice === 'auto' && systemLight.matches);
  document.documentElement.dataset.theme = light ? 'light' : 'dark';
}

// Makes `button` cycle auto -> dark -> light, showing the current choice.
export function themeButton(button) {
  const show = (choice) => {
    button.textContent = `Theme: ${choice[0].toUpperCase()}${choice.slice(1)}`;
    button.dataset.choice = choice;
  };
  show(storedChoice());
  button.addEventListener('click', () => {
    const next = CHOICES[(CHOICES.indexOf(storedChoice()) + 1) % CHOICES.length];
    if (next === 'auto') localStorage.removeItem(KEY);
    else localStorage.setItem(KEY, next);
    applyTheme(next);
    show(next);
  });
}

systemLight.addEventListener('change', () => applyTheme());
applyTheme();
