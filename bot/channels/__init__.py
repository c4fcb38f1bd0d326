"""Channel adapters: Telegram (python-telegram-bot) and WhatsApp/SMS (Twilio)."""
