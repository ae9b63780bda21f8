# The admin (and any template's |date without a format) says a time as drains/clock.py does:
# weekday, date, 24-hour time and the zone's abbreviation — "Sat 2026-12-05 18:00 IST".
DATETIME_FORMAT = "D Y-m-d H:i T"
SHORT_DATETIME_FORMAT = "D Y-m-d H:i T"
TIME_FORMAT = "H:i"
