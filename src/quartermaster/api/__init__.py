"""quartermaster.api"""
