"""Pages people use: the customer booking page, the manage link, the front-desk console, the
optometrist's day and calendar invites/feeds. Server-rendered HTML shells plus a little
vanilla JavaScript calling the booking JSON API; nothing is fetched from a CDN."""
