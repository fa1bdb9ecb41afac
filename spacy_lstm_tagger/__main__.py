"""``python -m spacy_lstm_tagger tag|confusion ...``"""
from .cli import main

if __name__ == "__main__":
    main()
