"""The accountant's month: the акт сверки, ЭДО statuses and resending, closing documents by e-mail, several companies."""
